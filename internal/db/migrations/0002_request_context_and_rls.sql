-- Database roles, the signed request context, role checks, row-level security on the identity
-- tables and the grants that keep applications away from secrets.

-- Roles are per server while this migration runs per database: tolerate a role that another
-- database (or a concurrent migration of one) already created.
DO $$
BEGIN
    CREATE ROLE tenancy_app NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE tenancy_authd NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- pgcrypto may already live outside the tenancy schema; pin the one function we need to wherever
-- it is, so that every SECURITY DEFINER function below keeps a search_path of pg_catalog, tenancy.
DO $$
DECLARE
    crypto_schema name := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                           WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE format(
        'CREATE FUNCTION tenancy.hmac_sha256(data bytea, key bytea) RETURNS bytea
         LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
        format('SELECT %I.hmac(data, key, %L)', crypto_schema, 'sha256'));
END $$;

CREATE FUNCTION tenancy.base64url(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
AS $$ SELECT translate(rtrim(replace(encode(data, 'base64'), E'\n', ''), '='), '+/', '-_') $$;

-- A request context (tctx) reads v1.<kid>.<user id>.<api key id>.<org id>.<project id>.<exp>.<mac>
-- where empty fields are absent ids, exp is Unix seconds and mac is the base64url HMAC-SHA256 of
-- everything before it under context key <kid>.
CREATE FUNCTION tenancy.sign_context(user_id uuid, api_key_id uuid, org_id uuid, project_id uuid, ttl interval)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
DECLARE
    signing_key record;
    payload text;
BEGIN
    IF (user_id IS NULL) = (api_key_id IS NULL) THEN
        RAISE EXCEPTION 'sign_context needs exactly one of user_id and api_key_id' USING ERRCODE = '22023';
    END IF;
    IF org_id IS NULL AND project_id IS NOT NULL THEN
        RAISE EXCEPTION 'sign_context: a project needs its organization' USING ERRCODE = '22023';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' THEN
        RAISE EXCEPTION 'sign_context: ttl must be positive' USING ERRCODE = '22023';
    END IF;
    SELECT k.kid, k.secret INTO signing_key
    FROM tenancy.context_keys k
    WHERE k.retired_at IS NULL OR k.retired_at > now()
    ORDER BY k.created_at DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sign_context: no active context key' USING ERRCODE = '55000';
    END IF;
    payload := concat_ws('.', 'v1', signing_key.kid,
                         coalesce(user_id::text, ''), coalesce(api_key_id::text, ''),
                         coalesce(org_id::text, ''), coalesce(project_id::text, ''),
                         floor(extract(epoch FROM now() + ttl))::bigint::text);
    RETURN payload || '.' || tenancy.base64url(tenancy.hmac_sha256(convert_to(payload, 'UTF8'), signing_key.secret));
END $$;

-- The verified context of this transaction, after the optional tenancy.project narrowing. All
-- NULL when the context is missing, empty, forged, expired, or narrowed to a project it cannot see.
CREATE FUNCTION tenancy.request_context(OUT user_id uuid, OUT api_key_id uuid, OUT org_id uuid, OUT project_id uuid)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
DECLARE
    uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
    raw text := nullif(current_setting('tenancy.context', true), '');
    narrowed text := nullif(current_setting('tenancy.project', true), '');
    parts text[];
    secret bytea;
    verified_project uuid;
BEGIN
    IF raw IS NULL OR length(raw) > 1024 THEN
        RETURN;
    END IF;
    parts := string_to_array(raw, '.');
    IF cardinality(parts) <> 8 OR parts[1] <> 'v1' OR parts[7] !~ '^[0-9]{1,12}$'
       OR parts[7]::bigint <= floor(extract(epoch FROM now())) THEN
        RETURN;
    END IF;
    SELECT k.secret INTO secret
    FROM tenancy.context_keys k
    WHERE k.kid = parts[2] AND (k.expires_at IS NULL OR k.expires_at > now());
    IF secret IS NULL
       OR tenancy.base64url(tenancy.hmac_sha256(convert_to(array_to_string(parts[1:7], '.'), 'UTF8'), secret)) <> parts[8] THEN
        RETURN;
    END IF;

    -- Signed by us, so the ids are well formed.
    verified_project := nullif(parts[6], '')::uuid;
    IF narrowed IS NOT NULL THEN
        IF narrowed !~ uuid_pattern OR nullif(parts[5], '') IS NULL THEN
            RETURN;
        END IF;
        IF verified_project IS NOT NULL AND verified_project <> narrowed::uuid THEN
            RETURN; -- narrowing may never move a project-scoped context to another project
        END IF;
        IF NOT EXISTS (SELECT 1 FROM tenancy.projects p
                       WHERE p.id = narrowed::uuid AND p.organization_id = parts[5]::uuid) THEN
            RETURN;
        END IF;
        verified_project := narrowed::uuid;
    END IF;

    user_id := nullif(parts[3], '')::uuid;
    api_key_id := nullif(parts[4], '')::uuid;
    org_id := nullif(parts[5], '')::uuid;
    project_id := verified_project;
END $$;

CREATE FUNCTION tenancy.current_user_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$ SELECT c.user_id FROM tenancy.request_context() c $$;

CREATE FUNCTION tenancy.current_api_key_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$ SELECT c.api_key_id FROM tenancy.request_context() c $$;

CREATE FUNCTION tenancy.current_org_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$ SELECT c.org_id FROM tenancy.request_context() c $$;

CREATE FUNCTION tenancy.current_project_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$ SELECT c.project_id FROM tenancy.request_context() c $$;

-- has_role checks the live rows, so a deleted membership or a revoked key loses access at once,
-- whatever its token still says. A project role applies to its project only; an organization
-- role applies to the organization and all its projects. Only the context's own organization
-- counts, and a project-scoped context only reaches its own project.
CREATE FUNCTION tenancy.has_role(org_id uuid, project_id uuid, min_role tenancy.role) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
DECLARE
    ctx record;
BEGIN
    SELECT * INTO ctx FROM tenancy.request_context();
    IF ctx.org_id IS NULL OR has_role.org_id IS DISTINCT FROM ctx.org_id OR min_role IS NULL THEN
        RETURN false;
    END IF;
    IF ctx.project_id IS NOT NULL AND has_role.project_id IS NOT NULL AND has_role.project_id <> ctx.project_id THEN
        RETURN false;
    END IF;
    IF ctx.user_id IS NOT NULL THEN
        RETURN EXISTS (
            SELECT 1
            FROM tenancy.memberships m
            JOIN tenancy.users u ON u.id = m.user_id
            WHERE m.user_id = ctx.user_id
              AND m.organization_id = has_role.org_id
              AND m.state = 'Active'
              AND NOT u.disabled
              AND m.role >= min_role
              AND (m.project_id IS NULL OR m.project_id = has_role.project_id));
    END IF;
    RETURN EXISTS (
        SELECT 1
        FROM tenancy.api_keys k
        WHERE k.id = ctx.api_key_id
          AND k.organization_id = has_role.org_id
          AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
          AND k.role >= min_role
          AND (k.project_id IS NULL OR k.project_id = has_role.project_id));
END $$;

-- The organizations the current principal belongs to (an Active membership of any scope, or a
-- live API key), for row-level security on the identity tables.
CREATE FUNCTION tenancy.member_organization_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
    SELECT m.organization_id
    FROM tenancy.request_context() c
    JOIN tenancy.memberships m ON m.user_id = c.user_id AND m.state = 'Active'
    JOIN tenancy.users u ON u.id = m.user_id AND NOT u.disabled
    UNION
    SELECT k.organization_id
    FROM tenancy.request_context() c
    JOIN tenancy.api_keys k ON k.id = c.api_key_id
    WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
      AND k.organization_id IS NOT NULL
$$;

-- Users without their secrets, limited to people who share an organization with the principal.
CREATE VIEW tenancy.users_public WITH (security_barrier) AS
SELECT u.id, u.email, u.display_name, u.disabled, u.created_at
FROM tenancy.users u
WHERE u.id IN (SELECT m.user_id FROM tenancy.memberships m
               WHERE m.organization_id IN (SELECT tenancy.member_organization_ids()));

-- Row-level security on the identity tables. The manager owns them (not bound: it is the owner
-- and has BYPASSRLS); authd manages identities and sees all; applications see their organizations.
ALTER TABLE tenancy.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.context_keys ENABLE ROW LEVEL SECURITY;

CREATE POLICY app_select ON tenancy.organizations FOR SELECT TO tenancy_app
    USING (id IN (SELECT tenancy.member_organization_ids()));
CREATE POLICY app_select ON tenancy.projects FOR SELECT TO tenancy_app
    USING (organization_id IN (SELECT tenancy.member_organization_ids()));
CREATE POLICY app_select ON tenancy.memberships FOR SELECT TO tenancy_app
    USING (organization_id IN (SELECT tenancy.member_organization_ids()));
CREATE POLICY app_select ON tenancy.audit_log FOR SELECT TO tenancy_app
    USING (organization_id IN (SELECT tenancy.member_organization_ids()));
-- An application writes its own actions only, as the principal of the request.
CREATE POLICY app_insert ON tenancy.audit_log FOR INSERT TO tenancy_app
    WITH CHECK (
        organization_id = (SELECT tenancy.current_org_id())
        AND actor_user_id IS NOT DISTINCT FROM (SELECT tenancy.current_user_id())
        AND actor_api_key_id IS NOT DISTINCT FROM (SELECT tenancy.current_api_key_id())
        AND (actor_user_id IS NOT NULL OR actor_api_key_id IS NOT NULL));

CREATE POLICY authd_all ON tenancy.organizations TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.projects TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.memberships TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.audit_log TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.users TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.api_keys TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.refresh_tokens TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_all ON tenancy.invitations TO tenancy_authd USING (true) WITH CHECK (true);
CREATE POLICY authd_read ON tenancy.context_keys FOR SELECT TO tenancy_authd USING (true);

-- Grants: nothing by default, then exactly what each role needs.
REVOKE ALL ON SCHEMA tenancy FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA tenancy FROM PUBLIC;
-- Functions are executable by PUBLIC by default: not these two. (The extensions' functions in
-- this schema stay as their extensions made them.)
REVOKE ALL ON FUNCTION tenancy.sign_context(uuid, uuid, uuid, uuid, interval), tenancy.request_context()
    FROM PUBLIC;
GRANT USAGE ON SCHEMA tenancy TO tenancy_app, tenancy_authd;

GRANT SELECT ON tenancy.organizations, tenancy.projects, tenancy.memberships, tenancy.users_public
    TO tenancy_app;
GRANT SELECT, INSERT ON tenancy.audit_log TO tenancy_app;
GRANT EXECUTE ON FUNCTION tenancy.current_user_id(), tenancy.current_api_key_id(), tenancy.current_org_id(),
    tenancy.current_project_id(), tenancy.has_role(uuid, uuid, tenancy.role),
    tenancy.member_organization_ids()
    TO tenancy_app, tenancy_authd;

GRANT SELECT ON tenancy.organizations, tenancy.projects, tenancy.users_public TO tenancy_authd;
GRANT SELECT, INSERT, UPDATE ON tenancy.users, tenancy.memberships TO tenancy_authd;
GRANT SELECT, UPDATE ON tenancy.api_keys TO tenancy_authd;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenancy.refresh_tokens, tenancy.invitations TO tenancy_authd;
GRANT SELECT, INSERT ON tenancy.audit_log TO tenancy_authd;
GRANT SELECT ON tenancy.context_keys TO tenancy_authd;
GRANT EXECUTE ON FUNCTION tenancy.sign_context(uuid, uuid, uuid, uuid, interval) TO tenancy_authd;
