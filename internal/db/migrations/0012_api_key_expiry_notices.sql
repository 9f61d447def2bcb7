-- When the organization's Owners and Admins were mailed that the key expires within 7 days; NULL
-- until then, and again when its expiry moves.
ALTER TABLE tenancy.api_keys ADD COLUMN expiry_noticed_at timestamptz;
