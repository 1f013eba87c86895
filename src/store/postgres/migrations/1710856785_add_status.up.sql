-- Kuma's resource status (migration of Mar 2024), the newest schema change of Kuma 2.x:
-- the schema kuma-cp 2.14 leaves.
ALTER TABLE resources ADD COLUMN IF NOT EXISTS status JSONB NOT NULL DEFAULT '{}'::jsonb;
