-- Kuma 2.5's index for cascading deletes by owner. Higuma's first migration already
-- creates it under this name, so this is a no-op on databases higuma migrated.
CREATE INDEX IF NOT EXISTS owner_fk_index ON resources (owner_type, owner_mesh, owner_name);
