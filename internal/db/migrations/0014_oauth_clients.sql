-- authd as an OpenID Connect provider: the registered clients (OAuthClient objects), their
-- secrets, the codes of the authorization code flow, and the consents people gave.

-- One row per OAuthClient. organization_id NULL: a platform-wide client (in the operator's
-- namespace) that members of any organization may sign in to.
CREATE TABLE tenancy.oauth_clients (
    uid                       uuid PRIMARY KEY,       -- metadata.uid of the OAuthClient
    client_id                 text NOT NULL UNIQUE,   -- <name>.<namespace>
    namespace                 text NOT NULL,
    name                      text NOT NULL,
    organization_id           uuid REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    display_name              text NOT NULL,
    redirect_uris             text[] NOT NULL DEFAULT '{}',
    post_logout_redirect_uris text[] NOT NULL DEFAULT '{}',
    public                    boolean NOT NULL,
    first_party               boolean NOT NULL,
    grant_types               text[] NOT NULL,
    scopes                    text[] NOT NULL,
    -- NULL: authd's own limits. Otherwise the shorter of the two applies.
    access_token_ttl          interval,
    refresh_token_ttl         interval,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);
ALTER TABLE tenancy.oauth_clients ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_read ON tenancy.oauth_clients FOR SELECT TO tenancy_authd USING (true);
GRANT SELECT ON tenancy.oauth_clients TO tenancy_authd;

-- A confidential client's secrets; only their SHA-256 is kept. The current one has no
-- expires_at; a rotated-out one works until its expires_at (the rotation grace period).
CREATE TABLE tenancy.oauth_client_secrets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_uid  uuid NOT NULL REFERENCES tenancy.oauth_clients (uid) ON DELETE CASCADE,
    secret_hash bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    rotation    text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE UNIQUE INDEX oauth_client_secrets_one_current ON tenancy.oauth_client_secrets (client_uid) WHERE expires_at IS NULL;
ALTER TABLE tenancy.oauth_client_secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_read ON tenancy.oauth_client_secrets FOR SELECT TO tenancy_authd USING (true);
GRANT SELECT ON tenancy.oauth_client_secrets TO tenancy_authd;

-- Authorization codes: single use, 60 seconds, bound to the client, the redirect URI and the PKCE
-- challenge. Only the code's SHA-256 is kept. family_id is the session its exchange started, so
-- that a code presented twice revokes what the first exchange issued (RFC 6749 section 4.1.2).
CREATE TABLE tenancy.oauth_codes (
    code_hash       bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    client_uid      uuid NOT NULL REFERENCES tenancy.oauth_clients (uid) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    redirect_uri    text NOT NULL,
    code_challenge  text NOT NULL DEFAULT '',
    scopes          text[] NOT NULL,
    nonce           text NOT NULL DEFAULT '',
    auth_time       timestamptz NOT NULL,
    mfa             boolean NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    family_id       uuid
);
CREATE INDEX oauth_codes_expires_at ON tenancy.oauth_codes (expires_at);
ALTER TABLE tenancy.oauth_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.oauth_codes TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.oauth_codes TO tenancy_authd;

-- What a person allowed a client that is not first-party, in one organization (the client acts
-- with the person's role there); revocable on the account page.
CREATE TABLE tenancy.oauth_consents (
    user_id         uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    client_uid      uuid NOT NULL REFERENCES tenancy.oauth_clients (uid) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    scopes          text[] NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_uid, organization_id)
);
ALTER TABLE tenancy.oauth_consents ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.oauth_consents TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.oauth_consents TO tenancy_authd;

-- The sessions of a client: its refresh tokens need the client to use them, and end with it.
-- scopes, auth_time and nonce carry what the ID tokens of a refresh repeat (OpenID Connect Core
-- section 12.2: the nonce of the original authentication, if any).
ALTER TABLE tenancy.refresh_tokens
    ADD COLUMN client_uid uuid REFERENCES tenancy.oauth_clients (uid) ON DELETE CASCADE,
    ADD COLUMN scopes     text[],
    ADD COLUMN auth_time  timestamptz,
    ADD COLUMN nonce      text;
CREATE INDEX refresh_tokens_client_idx ON tenancy.refresh_tokens (client_uid) WHERE client_uid IS NOT NULL;
