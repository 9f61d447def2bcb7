-- The organization of the request context when its principal holds at least min_role there
-- organization-wide, else NULL. TenantTable policies of tables without a project column compare
-- the row's organization with it, wrapped in (SELECT …): the context is then verified twice per
-- statement instead of three times (current_org_id, and has_role's own check).
CREATE FUNCTION tenancy.current_org_id_with_role(min_role tenancy.role) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
DECLARE
    org uuid := (SELECT r.org_id FROM tenancy.request_context() r);
BEGIN
    IF org IS NOT NULL AND tenancy.has_role(org, NULL, min_role) THEN
        RETURN org;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION tenancy.current_org_id_with_role(tenancy.role) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenancy.current_org_id_with_role(tenancy.role) TO tenancy_app, tenancy_authd;
