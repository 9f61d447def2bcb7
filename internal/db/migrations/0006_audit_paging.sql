-- The self-service audit log pages through an organization's rows newest first by id.
CREATE INDEX audit_log_organization_id_idx ON tenancy.audit_log (organization_id, id DESC);
