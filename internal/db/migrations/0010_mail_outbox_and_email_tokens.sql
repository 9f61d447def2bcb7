-- Mail, and the one-time links it carries.

-- Every mail authd and the manager send goes through this table: it is written in the
-- transaction that decides to send, and a dispatcher delivers it afterwards, so a crash between
-- the commit and the SMTP conversation loses nothing and a slow mail server never slows a request.
CREATE TABLE tenancy.mail_outbox (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,              -- the template: invitation, verify_email, password_reset, ...
    recipient       text NOT NULL,
    subject         text NOT NULL,
    -- The bodies hold one-time links: they are cleared once the mail is sent or given up.
    body_text       text,
    body_html       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A dispatcher that claimed the mail owns it until then; past it, another may retry.
    leased_until    timestamptz,
    last_error      text,
    sent_at         timestamptz,
    -- Given up: the server refused it for good, or every attempt failed.
    dead_at         timestamptz
);
CREATE INDEX mail_outbox_due ON tenancy.mail_outbox (next_attempt_at) WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX mail_outbox_done ON tenancy.mail_outbox (created_at) WHERE sent_at IS NOT NULL OR dead_at IS NOT NULL;
ALTER TABLE tenancy.mail_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.mail_outbox TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.mail_outbox TO tenancy_authd;
GRANT USAGE ON SEQUENCE tenancy.mail_outbox_id_seq TO tenancy_authd;

-- Tokens mailed to a person: a link to verify their address or to reset their password. Only the
-- SHA-256 of a token is kept. A token proves the address it was sent to, so it stops working if
-- the account's email changes; it works once, until expires_at.
CREATE TABLE tenancy.email_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    email      citext NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_user ON tenancy.email_tokens (user_id, purpose, created_at DESC);
ALTER TABLE tenancy.email_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY authd_all ON tenancy.email_tokens TO tenancy_authd USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.email_tokens TO tenancy_authd;

-- An invitation whose token was only mailed to the member's address (delivery Email): accepting
-- it proves the address. A link-delivered token sat in a Secret that others could read.
ALTER TABLE tenancy.invitations ADD COLUMN emailed boolean NOT NULL DEFAULT false;
