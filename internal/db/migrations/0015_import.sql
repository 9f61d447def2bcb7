-- Import from the system Tenancy replaces (`tenancy import`): the old API keys keep working until
-- a date, and the old audit rows are carried over once each.

-- An imported key: hash is SHA-256 of the whole old key, as for Tenancy's own keys. It is never an
-- APIKey's current key (always superseded) and always ends (expires_at), so the APIKey that
-- takes it over issues a Tenancy key beside it and deleting that APIKey revokes both.
ALTER TABLE tenancy.api_keys ADD COLUMN imported_at timestamptz;
ALTER TABLE tenancy.api_keys ADD CONSTRAINT api_keys_imported_keys_end
    CHECK (imported_at IS NULL OR (superseded_at IS NOT NULL AND expires_at IS NOT NULL));
CREATE INDEX api_keys_imported_idx ON tenancy.api_keys (organization_id, name) WHERE imported_at IS NOT NULL;

-- An imported audit row carries details.importID (<source>/<table>/<row id>): a second import
-- writes it no second time.
CREATE UNIQUE INDEX audit_log_import_idx ON tenancy.audit_log ((details ->> 'importID')) WHERE details ? 'importID';
