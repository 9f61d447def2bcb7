-- Import from the system Tenancy replaces (`tenancy import`): the old API keys keep working until
-- a date, and the old audit rows are carried over once each.

-- An imported key: hash is SHA-256 of the whole old key, as for Tenancy's own keys. It is written
-- under the uid of the APIKey that replaces it, is never that APIKey's current key (always
-- superseded) and always ends (expires_at): the APIKey issues a Tenancy key beside it, a
-- demotion lowers it and deleting the APIKey revokes both.
ALTER TABLE tenancy.api_keys ADD COLUMN imported_at timestamptz;
ALTER TABLE tenancy.api_keys ADD CONSTRAINT api_keys_imported_keys_end
    CHECK (imported_at IS NULL OR (superseded_at IS NOT NULL AND expires_at IS NOT NULL));

-- An imported audit row carries details.importID (<source>/<table>/<row id>): a second import
-- writes it no second time.
CREATE UNIQUE INDEX audit_log_import_idx ON tenancy.audit_log ((details ->> 'importID')) WHERE details ? 'importID';

-- What an import wrote, by source and the old row or the object: a second run creates only what
-- it never created, so it neither brings back what was deleted since (an erased account, a
-- Membership an Owner removed) nor takes over what it did not make (an account that existed).
CREATE TABLE tenancy.import_ledger (
    source      text NOT NULL,
    kind        text NOT NULL,   -- users, or an object's Kind
    key         text NOT NULL,   -- the old row's id, or namespace/name
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, kind, key)
);
ALTER TABLE tenancy.import_ledger ENABLE ROW LEVEL SECURITY;
