-- Two-factor authentication with TOTP (RFC 6238) and recovery codes, and organizations that
-- require it.

-- A user's authenticator. authd must read the secret to check codes, so it is stored as it is,
-- readable by the owner and tenancy_authd only (as the password hashes are). A row without
-- confirmed_at is an enrolment not yet proven with a code; it protects nothing.
CREATE TABLE tenancy.totp_factors (
    user_id        uuid PRIMARY KEY REFERENCES tenancy.users (id) ON DELETE CASCADE,
    secret         text NOT NULL,                -- base32, 160 bits
    confirmed_at   timestamptz,
    -- The time step of the last code accepted: a code, or an earlier one, never works twice.
    last_used_step bigint,
    created_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenancy.totp_factors ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.totp_factors TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.totp_factors TO tenancy_authd;

-- Single-use codes for when the authenticator is lost; only their SHA-256 is kept.
CREATE TABLE tenancy.recovery_codes (
    user_id   uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
ALTER TABLE tenancy.recovery_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.recovery_codes TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.recovery_codes TO tenancy_authd;

-- A session started with a second factor (its tokens carry amr ["pwd", "otp"]); rotation keeps it.
ALTER TABLE tenancy.refresh_tokens ADD COLUMN mfa boolean NOT NULL DEFAULT false;

-- Organization spec.requireMFA: authd issues tokens for the organization only to sessions
-- started with a second factor.
ALTER TABLE tenancy.organizations ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;

-- The second step of a login on the web pages: after the password, a ticket (in the form, only
-- its SHA-256 here) lets the browser give the code within 5 minutes and 5 tries.
CREATE TABLE tenancy.login_challenges (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0
);
CREATE INDEX login_challenges_expires_at ON tenancy.login_challenges (expires_at);
ALTER TABLE tenancy.login_challenges ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.login_challenges TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.login_challenges TO tenancy_authd;
