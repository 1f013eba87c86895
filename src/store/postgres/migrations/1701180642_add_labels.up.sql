-- Kuma's resource labels (migration of Nov 2023). Appended after the owner columns, where
-- kuma-cp's positional INSERT expects them; higuma names its columns and leaves labels to
-- the default.
ALTER TABLE resources ADD COLUMN IF NOT EXISTS labels JSONB DEFAULT '{}'::jsonb;
