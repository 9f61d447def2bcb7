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

-- admit_quota decides, under the namespace's quota lock, whether one more creation fits: the
-- asking replica's cache shows cache_count objects, among them the admitted keys in shown; every
-- other creation admitted within the window counts too. When it fits (and is no dry run) the
-- creation is recorded, and rows past the window are pruned: this namespace's, and a few of
-- others' that no concurrent admission holds. One call, one round trip: the lock is held from the
-- read to the commit of the calling statement. Statements in a plpgsql function take their own
-- snapshots, so the read sees what the lock's previous holder committed.
CREATE FUNCTION tenancy.admit_quota(ns text, quota_name text, quota_key text, uid uuid, quota_limit integer,
                                    cache_count integer, shown text[], dry_run boolean, window_seconds double precision,
                                    OUT used integer, OUT admitted boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, tenancy
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('tenancy.quota/' || ns, 0));
    used := cache_count + (SELECT count(*) FROM tenancy.quota_admissions q
                           WHERE q.namespace = ns AND q.quota = quota_name AND q.key <> quota_key
                             AND q.admitted_at > now() - make_interval(secs => window_seconds)
                             AND q.key <> ALL (shown))::integer;
    admitted := used < quota_limit;
    IF NOT admitted OR dry_run THEN
        RETURN;
    END IF;
    DELETE FROM tenancy.quota_admissions q
    WHERE q.namespace = ns AND q.admitted_at < now() - make_interval(secs => window_seconds)
      AND (q.quota, q.key) <> (quota_name, quota_key);
    DELETE FROM tenancy.quota_admissions q
    WHERE q.ctid IN (SELECT o.ctid FROM tenancy.quota_admissions o
                     WHERE o.namespace <> ns AND o.admitted_at < now() - make_interval(secs => window_seconds)
                     LIMIT 16 FOR UPDATE SKIP LOCKED);
    INSERT INTO tenancy.quota_admissions AS q (namespace, quota, key, object_uid) VALUES (ns, quota_name, quota_key, uid)
    ON CONFLICT (namespace, quota, key) DO UPDATE SET object_uid = excluded.object_uid, admitted_at = now();
END $$;
REVOKE ALL ON FUNCTION tenancy.admit_quota(text, text, text, uuid, integer, integer, text[], boolean, double precision) FROM PUBLIC;
