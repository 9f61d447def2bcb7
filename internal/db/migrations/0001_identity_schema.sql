-- Identity schema: organizations, projects, users, memberships, API keys, refresh tokens,
-- invitations and the audit log, owned by the manager's role.

CREATE SCHEMA IF NOT EXISTS tenancy;

-- Extensions land in the tenancy schema on a fresh database; where they already exist elsewhere
-- the functions below find them through the search_path fixed at the end of 0002.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA tenancy;
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA tenancy;

-- The ladder Viewer < Member < Admin < Owner is the enum's order, so roles compare with >=.
CREATE TYPE tenancy.role AS ENUM ('Viewer', 'Member', 'Admin', 'Owner');
CREATE TYPE tenancy.membership_state AS ENUM ('Invited', 'Active');

CREATE TABLE tenancy.organizations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    uid          uuid NOT NULL UNIQUE,          -- metadata.uid of the Organization
    name         text NOT NULL UNIQUE,
    display_name text NOT NULL DEFAULT '',
    tier         text NOT NULL CHECK (tier IN ('Free', 'Pro', 'Enterprise')),
    namespace    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.projects (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    uid             uuid NOT NULL UNIQUE,       -- metadata.uid of the Project
    organization_id uuid NOT NULL REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name),
    UNIQUE (organization_id, id)                -- lets memberships and keys pin a project to its org
);

CREATE TABLE tenancy.users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               citext NOT NULL UNIQUE CHECK (email = lower(btrim(email::text))),
    display_name        text NOT NULL DEFAULT '',
    password_hash       text,                   -- argon2id, PHC string with its parameters
    password_changed_at timestamptz,
    disabled            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.memberships (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    uid             uuid NOT NULL UNIQUE,       -- metadata.uid of the Membership
    organization_id uuid NOT NULL REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    project_id      uuid,
    user_id         uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    role            tenancy.role NOT NULL,
    state           tenancy.membership_state NOT NULL DEFAULT 'Invited',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id) REFERENCES tenancy.projects (organization_id, id) ON DELETE CASCADE,
    UNIQUE NULLS NOT DISTINCT (organization_id, project_id, user_id)
);
CREATE INDEX memberships_user_idx ON tenancy.memberships (user_id);

CREATE TABLE tenancy.api_keys (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    uid             uuid NOT NULL,              -- metadata.uid of the APIKey; one row per issued key
    name            text NOT NULL,
    -- Kept (revoked) for audit when the organization goes, hence SET NULL rather than CASCADE.
    organization_id uuid REFERENCES tenancy.organizations (id) ON DELETE SET NULL,
    -- No foreign key: SET NULL would turn a deleted project's keys organization-wide. Deleting a
    -- project revokes its keys; a dangling id matches no project in has_role.
    project_id      uuid,
    key_id          text NOT NULL UNIQUE,
    prefix          text NOT NULL,
    hash            bytea NOT NULL UNIQUE CHECK (length(hash) = 32), -- SHA-256 of the whole key
    role            tenancy.role NOT NULL CHECK (role <> 'Owner'),
    rotation        text NOT NULL DEFAULT '',  -- the spec.rotation this key was issued for
    expires_at      timestamptz,
    superseded_at   timestamptz,                -- a newer key replaced it (it lives out its grace period)
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- One current key per APIKey resource; superseded keys keep working until their expires_at.
CREATE UNIQUE INDEX api_keys_current_idx ON tenancy.api_keys (uid) WHERE superseded_at IS NULL;
CREATE INDEX api_keys_organization_idx ON tenancy.api_keys (organization_id);

CREATE TABLE tenancy.refresh_tokens (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hash              bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    family_id         uuid NOT NULL,
    parent_id         uuid REFERENCES tenancy.refresh_tokens (id) ON DELETE SET NULL,
    user_id           uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    organization_id   uuid REFERENCES tenancy.organizations (id) ON DELETE CASCADE,
    project_id        uuid REFERENCES tenancy.projects (id) ON DELETE CASCADE,
    expires_at        timestamptz NOT NULL,
    family_expires_at timestamptz NOT NULL,
    rotated_at        timestamptz,
    revoked_at        timestamptz,
    user_agent        text NOT NULL DEFAULT '',
    client_address    text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON tenancy.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON tenancy.refresh_tokens (user_id);

CREATE TABLE tenancy.invitations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    membership_id uuid NOT NULL REFERENCES tenancy.memberships (id) ON DELETE CASCADE,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invitations_membership_idx ON tenancy.invitations (membership_id);

-- No foreign keys: the audit trail outlives what it talks about.
CREATE TABLE tenancy.audit_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL,             -- a Kubernetes username, an email or a key id
    actor_user_id    uuid,
    actor_api_key_id uuid,
    action           text NOT NULL,
    target           text NOT NULL DEFAULT '',
    organization_id  uuid,
    request_id       text NOT NULL DEFAULT '',
    details          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_organization_at_idx ON tenancy.audit_log (organization_id, at DESC);

-- HMAC keys that sign request contexts (tctx). Only the manager and authd reach this table.
CREATE TABLE tenancy.context_keys (
    kid        text PRIMARY KEY,
    secret     bytea NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,                     -- signs no more from then on
    expires_at timestamptz                      -- verifies no more from then on
);
INSERT INTO tenancy.context_keys (kid, secret)
VALUES (encode(gen_random_bytes(6), 'hex'), gen_random_bytes(32));
