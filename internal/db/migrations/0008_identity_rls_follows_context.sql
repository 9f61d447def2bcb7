-- Row-level security on the identity tables follows the request context, not every membership of
-- its principal: an application sees the organization its context was signed for, and only while
-- the principal still holds a role there; a project-scoped principal sees only what its project
-- reaches; and the audit log shows everything to the organization's Admins and Owners only, and
-- their own actions to everyone else.

-- The live grants of a principal in an organization, each as the project it is scoped to (NULL
-- for an organization-wide one): the rows has_role checks, an Active membership of a user who is
-- not disabled, or an unrevoked, unexpired API key (a user's context counts its memberships only).
-- Internal: the functions below call it with the verified context, as the owner.
CREATE FUNCTION tenancy.live_grant_projects(org_id uuid, user_id uuid, api_key_id uuid) RETURNS SETOF uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, tenancy
AS $$
    SELECT m.project_id
    FROM tenancy.memberships m
    JOIN tenancy.users u ON u.id = m.user_id
    WHERE live_grant_projects.user_id IS NOT NULL
      AND m.user_id = live_grant_projects.user_id
      AND m.organization_id = live_grant_projects.org_id
      AND m.state = 'Active'
      AND NOT u.disabled
    UNION ALL
    SELECT k.project_id
    FROM tenancy.api_keys k
    WHERE live_grant_projects.user_id IS NULL
      AND k.id = live_grant_projects.api_key_id
      AND k.organization_id = live_grant_projects.org_id
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
$$;
REVOKE ALL ON FUNCTION tenancy.live_grant_projects(uuid, uuid, uuid) FROM PUBLIC;

-- The projects of the context's organization that its principal reaches: all of them with an
-- organization-wide role, else those of its project roles; only the context's project when the
-- context is project-scoped or narrowed. A project id that names no project of the organization
-- (an API key's, whose project is gone) reaches nothing.
CREATE FUNCTION tenancy.reachable_project_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
    WITH c AS (SELECT * FROM tenancy.request_context()),
         g AS (SELECT s.project_id
               FROM c, tenancy.live_grant_projects(c.org_id, c.user_id, c.api_key_id) AS s(project_id))
    SELECT p.id
    FROM c
    JOIN tenancy.projects p ON p.organization_id = c.org_id
    WHERE (c.project_id IS NULL OR p.id = c.project_id)
      AND (EXISTS (SELECT 1 FROM g WHERE g.project_id IS NULL) OR p.id IN (SELECT g.project_id FROM g))
$$;

-- The context's organization while its principal holds a live role there (has_role for at least
-- Viewer, organization-wide or in a project it reaches), else NULL.
CREATE FUNCTION tenancy.reachable_org_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
    SELECT c.org_id
    FROM tenancy.request_context() c
    WHERE c.org_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM tenancy.live_grant_projects(c.org_id, c.user_id, c.api_key_id) AS g(project_id)
                  WHERE g.project_id IS NULL
                     OR ((c.project_id IS NULL OR g.project_id = c.project_id)
                         AND EXISTS (SELECT 1 FROM tenancy.projects p
                                     WHERE p.id = g.project_id AND p.organization_id = c.org_id)))
$$;

REVOKE ALL ON FUNCTION tenancy.reachable_project_ids(), tenancy.reachable_org_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenancy.reachable_project_ids(), tenancy.reachable_org_id() TO tenancy_app, tenancy_authd;

-- Kept for the policies applications may have written with it: the context's organization, the
-- only one a request may see, while its principal holds a live role there.
CREATE OR REPLACE FUNCTION tenancy.member_organization_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
    SELECT o FROM tenancy.reachable_org_id() AS o WHERE o IS NOT NULL
$$;

-- Users without their secrets: the people whose memberships the principal may see (below).
CREATE OR REPLACE VIEW tenancy.users_public WITH (security_barrier) AS
SELECT u.id, u.email, u.display_name, u.disabled, u.created_at
FROM tenancy.users u
WHERE u.id IN (SELECT m.user_id FROM tenancy.memberships m
               WHERE m.organization_id = (SELECT tenancy.reachable_org_id())
                 AND (m.project_id IS NULL OR m.project_id IN (SELECT tenancy.reachable_project_ids())));

-- The context functions are wrapped in (SELECT …) so that each runs once per statement.
ALTER POLICY app_select ON tenancy.organizations
    USING (id = (SELECT tenancy.reachable_org_id()));
ALTER POLICY app_select ON tenancy.projects
    USING (organization_id = (SELECT tenancy.reachable_org_id())
           AND id IN (SELECT tenancy.reachable_project_ids()));
-- The memberships that give access to what the principal reaches: the organization-wide ones and
-- those of its projects.
ALTER POLICY app_select ON tenancy.memberships
    USING (organization_id = (SELECT tenancy.reachable_org_id())
           AND (project_id IS NULL OR project_id IN (SELECT tenancy.reachable_project_ids())));
-- The whole log for the organization's Admins and Owners (organization-wide), the principal's own
-- rows for everyone else.
ALTER POLICY app_select ON tenancy.audit_log
    USING (organization_id = (SELECT tenancy.reachable_org_id())
           AND (organization_id = (SELECT tenancy.current_org_id_with_role('Admin'))
                OR actor_user_id = (SELECT tenancy.current_user_id())
                OR actor_api_key_id = (SELECT tenancy.current_api_key_id())));
-- An application writes its own actions only, as the principal of the request, and only while
-- that principal still holds a live role in the context's organization.
ALTER POLICY app_insert ON tenancy.audit_log
    WITH CHECK (
        organization_id = (SELECT tenancy.reachable_org_id())
        AND actor_user_id IS NOT DISTINCT FROM (SELECT tenancy.current_user_id())
        AND actor_api_key_id IS NOT DISTINCT FROM (SELECT tenancy.current_api_key_id())
        AND (actor_user_id IS NOT NULL OR actor_api_key_id IS NOT NULL));
