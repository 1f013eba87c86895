-- The whole schema of Kuma 2.4 (its migrations 1579518998 .. 1677096751 applied in order),
-- created in one step. Recorded as version 1677096751, Kuma 2.4's last migration, so kuma-cp
-- 2.4 accepts a database migrated by higuma and higuma accepts one migrated by kuma-cp 2.4.

-- Column order is Kuma's: kuma-cp 2.4 inserts with positional VALUES.
CREATE TABLE resources (
    name              varchar(253) NOT NULL,
    mesh              varchar(100) NOT NULL,
    type              varchar(100) NOT NULL,
    version           integer NOT NULL,
    spec              text,
    creation_time     timestamp NOT NULL DEFAULT now(),
    modification_time timestamp NOT NULL DEFAULT now(),
    -- Kuma leaves owner_name at varchar(100); higuma widens it to the name width so a
    -- DataplaneInsight of a 253-character Dataplane can point at its owner.
    owner_name        varchar(253),
    owner_mesh        varchar(100),
    owner_type        varchar(100),
    PRIMARY KEY (name, mesh, type),
    CONSTRAINT owner_fk FOREIGN KEY (owner_name, owner_mesh, owner_type)
        REFERENCES resources (name, mesh, type) ON DELETE CASCADE
);

-- Cascading deletes look rows up by owner. Kuma adds this index in 2.5 (1693473198) with
-- CREATE INDEX IF NOT EXISTS under the same name, so that migration stays a no-op here.
CREATE INDEX owner_fk_index ON resources (owner_type, owner_mesh, owner_name);

-- Kuma's leader election (pglock) table, lock `kuma-cp-lock`: higuma elects its leader
-- with the same lock and lease, so kuma-cp and higuma instances sharing the database agree
-- on one leader.
CREATE TABLE locks (
    name                  varchar(255) PRIMARY KEY,
    record_version_number bigint,
    data                  bytea,
    owner                 varchar(255)
);
CREATE SEQUENCE locks_rvn OWNED BY locks.record_version_number;

-- Change notifications, payload as in Kuma's 1610445956_update_notify_event.
CREATE OR REPLACE FUNCTION notify_event() RETURNS TRIGGER AS $$
DECLARE
    data json;
    notification json;
BEGIN
    IF (TG_OP = 'DELETE') THEN
        data = json_build_object('name', OLD.name, 'mesh', OLD.mesh, 'type', OLD.type);
    ELSE
        data = json_build_object('name', NEW.name, 'mesh', NEW.mesh, 'type', NEW.type);
    END IF;
    notification = json_build_object('action', TG_OP, 'data', data);
    PERFORM pg_notify('resource_events', notification::text);
    -- The result of an AFTER trigger is ignored.
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Kuma's trigger name (from 1605012491_add_trigger).
CREATE TRIGGER products_notify_event
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE PROCEDURE notify_event();
