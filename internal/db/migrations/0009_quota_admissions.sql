-- Creations the validating webhook admitted against a tier quota, which the API server may not
-- have shown to every replica's cache yet: a replica counts the rows whose object its cache does
-- not show, so that two creates on two replicas cannot both take an organization's last slot.
-- A row counts for 30 seconds (db.QuotaAdmissionWindow), or until the deletion of its object is
-- admitted. Only the manager reads or writes it.
CREATE TABLE tenancy.quota_admissions (
    namespace   text NOT NULL,                -- the organization's namespace
    quota       text NOT NULL,                -- what the quota limits: projects, members, API keys
    key         text NOT NULL,                -- what it counts once: a project's or key's name, a member's email
    object_uid  uuid NOT NULL,                -- the admitted object
    admitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, quota, key)
);
CREATE INDEX quota_admissions_object_uid ON tenancy.quota_admissions (object_uid);
CREATE INDEX quota_admissions_admitted_at ON tenancy.quota_admissions (admitted_at);
ALTER TABLE tenancy.quota_admissions ENABLE ROW LEVEL SECURITY;
