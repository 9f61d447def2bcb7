-- A small hand-built multi-tenant schema, as many teams have before Tenancy: the example that
-- docs/quickstart.md (section 14) and docs/migration.md import into `make dev` with
-- `tenancy import --mapping examples/legacy/mapping.yaml`. Running it again changes nothing.
--
-- The people's passwords (bcrypt, as the old backend stored them): peter@initech.example
-- "peter-old-password", milton@initech.example "milton-old-password", bill@initech.example
-- "bill-old-password", alice@umbrella.example "alice-old-password" (a PHP $2y$ hash),
-- bob@umbrella.example "bob-old-password". The old API keys (the table keeps their SHA-256):
-- initech's "Reporting bot" ik_live_4f1c9a7e2b8d4c6a9e3f5b7d1a2c4e6f, umbrella's "Research
-- export" uk_live_8b2d6f0a4c8e2b6d0f4a8c2e6b0d4f8a.

CREATE SCHEMA IF NOT EXISTS legacy;

CREATE TABLE IF NOT EXISTS legacy.organizations (
    id                uuid PRIMARY KEY,
    slug              text NOT NULL UNIQUE,
    name              text NOT NULL,
    subscription_tier text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS legacy.projects (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES legacy.organizations,
    slug            text NOT NULL,
    name            text NOT NULL
);
CREATE TABLE IF NOT EXISTS legacy.users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    full_name     text NOT NULL DEFAULT '',
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS legacy.organization_memberships (
    organization_id uuid NOT NULL REFERENCES legacy.organizations,
    user_id         uuid NOT NULL REFERENCES legacy.users,
    role            text NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE TABLE IF NOT EXISTS legacy.project_memberships (
    project_id uuid NOT NULL REFERENCES legacy.projects,
    user_id    uuid NOT NULL REFERENCES legacy.users,
    role       text NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE IF NOT EXISTS legacy.api_keys (
    id              bigint PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES legacy.organizations,
    project_id      uuid REFERENCES legacy.projects,
    name            text NOT NULL,
    key_hash        text NOT NULL UNIQUE,  -- hex SHA-256 of the whole key
    role            text NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz
);
CREATE TABLE IF NOT EXISTS legacy.audit_logs (
    id              bigint PRIMARY KEY,
    organization_id uuid,
    actor_id        uuid,
    action          text NOT NULL,
    target          text NOT NULL DEFAULT '',
    metadata        jsonb,
    created_at      timestamptz NOT NULL
);

-- The application's own tables: tickets carry organization_id (and an old policy keyed on a
-- session variable), their comments do not.
CREATE TABLE IF NOT EXISTS legacy.tickets (
    id              bigint PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES legacy.organizations,
    title           text NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_organization_id_idx ON legacy.tickets (organization_id);
CREATE TABLE IF NOT EXISTS legacy.ticket_comments (
    id        bigint PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES legacy.tickets,
    body      text NOT NULL
);
ALTER TABLE legacy.tickets ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tickets_by_org ON legacy.tickets;
CREATE POLICY tickets_by_org ON legacy.tickets
    USING (organization_id = nullif(current_setting('app.org_id', true), '')::uuid);
GRANT USAGE ON SCHEMA legacy TO tenancy_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON legacy.tickets, legacy.ticket_comments TO tenancy_app;

INSERT INTO legacy.organizations VALUES
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', 'initech', 'Initech', 'business', '2021-02-01'),
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', 'umbrella', 'Umbrella Corporation', 'free', '2022-07-15')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.projects VALUES
    ('7c2f1d0e-8a6b-4f3e-b1c2-9d8e7f6a5b01', '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', 'tps-reports', 'TPS reports'),
    ('7c2f1d0e-8a6b-4f3e-b1c2-9d8e7f6a5b02', '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', 'research', 'Research')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.users VALUES
    ('5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c01', 'peter@initech.example', 'Peter Gibbons', '$2a$10$.3Pu7o..hB1PZtwMM45Jbutp6CeWcnE4TMg1RIuweBFpmyBfG24Ni', '2021-02-01'),
    ('5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c02', 'Milton@Initech.example', 'Milton Waddams', '$2a$10$HPSNZUV0fl0FFCMeOuGgi.GNF8XxWpKMs5Ntu0BNuD2aTN7nYwKhi', '2021-03-01'),
    ('5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c03', 'bill@initech.example', 'Bill Lumbergh', '$2a$10$QHd3EGPihBLBtlwfg0s/jOM9Nbc06nvbfyMEqSq77yi3rmJ86Ihf.', '2021-02-02'),
    ('5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c04', 'alice@umbrella.example', 'Alice Abernathy', '$2y$10$hvqDlPsdncMYh8cxITKhp.zxPJTFewP0MJZy.1uCgpdv1w25GmZnq', '2022-07-15'),
    ('5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c05', 'bob@umbrella.example', 'Bob', '$2a$10$yyBqitFu2aWGA/4RDdav0OWPSrjjebEFo2tJLq3wchBkaDHOPECpK', '2022-08-01')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.organization_memberships VALUES
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c01', 'owner'),
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c02', 'member'),
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c03', 'admin'),
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c04', 'owner'),
    ('0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c05', 'viewer')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.project_memberships VALUES
    ('7c2f1d0e-8a6b-4f3e-b1c2-9d8e7f6a5b02', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c05', 'member')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.api_keys VALUES
    (1, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', NULL, 'Reporting bot',
     '5d755109b1a46bc59b6fec60f7a8e3b37e2ac1ca83531e28b40348b5a24c9519', 'member', NULL, NULL),
    (2, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', '7c2f1d0e-8a6b-4f3e-b1c2-9d8e7f6a5b02', 'Research export',
     '99f1ed600c61383e9d73e8fc9e835526dc190c2c4f34742b626179e5556746a0', 'viewer', NULL, NULL)
ON CONFLICT DO NOTHING;
INSERT INTO legacy.audit_logs VALUES
    (1, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c01', 'project.created', 'project/tps-reports', '{"via": "dashboard"}', '2021-02-03 09:00:00+00'),
    (2, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c03', 'member.invited', 'user/milton@initech.example', NULL, '2021-03-01 08:30:00+00'),
    (3, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', '5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c04', 'apikey.created', 'apikey/research-export', NULL, '2022-09-01 14:00:00+00')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.tickets VALUES
    (1, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', 'New cover sheets for the TPS reports'),
    (2, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a01', 'Red stapler missing'),
    (3, '0b9e6a54-3f0c-4c1e-9a51-6d1e0c1f2a02', 'Containment breach in lab 4')
ON CONFLICT DO NOTHING;
INSERT INTO legacy.ticket_comments VALUES
    (1, 1, 'Did you get the memo?'),
    (2, 2, 'I believe you have my stapler'),
    (3, 3, 'Seal level B')
ON CONFLICT DO NOTHING;
