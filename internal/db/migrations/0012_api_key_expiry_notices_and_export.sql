-- Notices of API keys about to expire, and an index for exports.

-- When the organization's Owners and Admins were mailed that the key expires within 7 days; NULL
-- until then, and again when its expiry moves.
ALTER TABLE tenancy.api_keys ADD COLUMN expiry_noticed_at timestamptz;

-- A person's export (GET /api/v1/me/export) reads the audit rows they caused.
CREATE INDEX audit_log_actor_user_id_idx ON tenancy.audit_log (actor_user_id) WHERE actor_user_id IS NOT NULL;
