package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Organization is the row an Organization custom resource produces.
type Organization struct {
	// ID is the row id; when set on upsert, a row deleted by hand comes back with the same id.
	ID          string
	UID         string
	Name        string
	DisplayName string
	Tier        string
	Namespace   string
	// RequireMFA: authd serves the organization only to sessions with a second factor.
	RequireMFA bool
}

// Actor names who caused a change, for the audit log.
type Actor struct {
	Name      string // the Kubernetes user from tenancy.dev/last-changed-by, or the controller
	RequestID string
}

// UpsertResult tells what an upsert did.
type UpsertResult struct {
	ID      string
	Changed bool // inserted or updated; false when the row already matched
}

// OrganizationCounts are the figures an Organization shows in its status.
type OrganizationCounts struct {
	Projects int32
	Members  int32
}

const upsertOrganizationSQL = `
WITH upsert AS (
    INSERT INTO tenancy.organizations AS o (id, uid, name, display_name, tier, namespace, require_mfa)
    SELECT coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, $5, $6, $9
    -- A row that already matches is left untouched: no lock, no write, so a resync only reads.
    WHERE NOT EXISTS (SELECT 1 FROM tenancy.organizations x WHERE x.uid = $2::uuid
                      AND (x.name, x.display_name, x.tier, x.namespace, x.require_mfa) = ($3::text, $4::text, $5::text, $6::text, $9::boolean))
    ON CONFLICT (uid) DO UPDATE
        SET name = excluded.name, display_name = excluded.display_name, tier = excluded.tier,
            namespace = excluded.namespace, require_mfa = excluded.require_mfa, updated_at = now()
        WHERE (o.name, o.display_name, o.tier, o.namespace, o.require_mfa)
              IS DISTINCT FROM (excluded.name, excluded.display_name, excluded.tier, excluded.namespace, excluded.require_mfa)
    RETURNING o.id, (o.xmax = 0) AS inserted
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
    SELECT $7, CASE WHEN inserted THEN 'organization.created' ELSE 'organization.updated' END,
           'organization/' || $3, id, $8,
           jsonb_build_object('displayName', $4::text, 'tier', $5::text, 'namespace', $6::text, 'requireMFA', $9::boolean)
    FROM upsert
)
SELECT id, true FROM upsert
UNION ALL
SELECT id, false FROM tenancy.organizations WHERE uid = $2
LIMIT 1`

// UpsertOrganization inserts or updates the organization's row, keyed by the resource's uid, and
// audits a change. A row of the same name left by an earlier resource of that name (whose cleanup
// never ran) is replaced: names are unique in the cluster, so it cannot belong to a live object.
// org.ID is the id a new row gets; an existing row keeps its own. When another organization's row
// has that id, it returns a *RowIDInUseError.
func (p *Postgres) UpsertOrganization(ctx context.Context, org Organization, actor Actor) (UpsertResult, error) {
	if err := p.ensureMigrated(); err != nil {
		return UpsertResult{}, err
	}
	result, err := p.upsertOrganization(ctx, org, actor)
	// The orphan may hold the id asked for as well as the name.
	if isUniqueViolationOn(err, "organizations_name_key") || isUniqueViolationOn(err, "organizations_pkey") {
		if err := p.deleteOrphanOrganization(ctx, org, actor); err != nil {
			return UpsertResult{}, err
		}
		result, err = p.upsertOrganization(ctx, org, actor)
	}
	if isUniqueViolationOn(err, "organizations_pkey") {
		err = p.organizationIDInUse(ctx, org.ID, err)
	}
	if err != nil {
		return UpsertResult{}, fmt.Errorf("upserting organization %s: %w", org.Name, err)
	}
	return result, nil
}

// organizationIDInUse names the organization whose row has id, which the violation says an
// upsert asked for; when that row is gone already, the violation stays, for a retry.
func (p *Postgres) organizationIDInUse(ctx context.Context, id string, violation error) error {
	var holder string
	if err := p.pool.QueryRow(ctx, "SELECT name FROM tenancy.organizations WHERE id = $1", id).Scan(&holder); err != nil {
		return violation
	}
	return &RowIDInUseError{ID: id, Holder: "organization " + holder}
}

func (p *Postgres) upsertOrganization(ctx context.Context, org Organization, actor Actor) (UpsertResult, error) {
	var r UpsertResult
	err := p.pool.QueryRow(ctx, upsertOrganizationSQL,
		nullUUID(org.ID), org.UID, org.Name, org.DisplayName, org.Tier, org.Namespace, actor.Name, actor.RequestID, org.RequireMFA,
	).Scan(&r.ID, &r.Changed)
	return r, err
}

func (p *Postgres) deleteOrphanOrganization(ctx context.Context, org Organization, actor Actor) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orphanID string
		err := tx.QueryRow(ctx, "SELECT id FROM tenancy.organizations WHERE name = $1 AND uid <> $2 FOR UPDATE", org.Name, org.UID).Scan(&orphanID)
		if err == pgx.ErrNoRows {
			return nil
		}
		if err != nil {
			return fmt.Errorf("finding the orphaned row of organization %s: %w", org.Name, err)
		}
		return deleteOrganizationRows(ctx, tx, orphanID, "organization/"+org.Name, actor, "organization.orphan-replaced")
	})
}

// DeleteOrganization removes the organization's identity rows: its projects and memberships go,
// its API keys stay revoked for audit. It is idempotent.
func (p *Postgres) DeleteOrganization(ctx context.Context, uid, name string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var id string
		err := tx.QueryRow(ctx, "SELECT id FROM tenancy.organizations WHERE uid = $1 FOR UPDATE", uid).Scan(&id)
		if err == pgx.ErrNoRows {
			return nil
		}
		if err != nil {
			return err
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		return deleteOrganizationRows(ctx, tx, id, "organization/"+name, actor, "organization.deleted")
	})
	if err != nil {
		return fmt.Errorf("deleting organization %s: %w", name, err)
	}
	return nil
}

func deleteOrganizationRows(ctx context.Context, tx pgx.Tx, id, target string, actor Actor, action string) error {
	if _, err := tx.Exec(ctx,
		"UPDATE tenancy.api_keys SET revoked_at = now() WHERE organization_id = $1 AND revoked_at IS NULL", id); err != nil {
		return fmt.Errorf("revoking API keys: %w", err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM tenancy.organizations WHERE id = $1", id); err != nil {
		return fmt.Errorf("deleting the organization row: %w", err)
	}
	return insertAudit(ctx, tx, actor, action, target, id, nil)
}

// OrganizationCounts counts the organization's project rows and distinct members.
func (p *Postgres) OrganizationCounts(ctx context.Context, id string) (OrganizationCounts, error) {
	if err := p.ensureMigrated(); err != nil {
		return OrganizationCounts{}, err
	}
	var c OrganizationCounts
	err := p.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM tenancy.projects WHERE organization_id = $1)::int,
		       (SELECT count(DISTINCT user_id) FROM tenancy.memberships WHERE organization_id = $1)::int`,
		id).Scan(&c.Projects, &c.Members)
	if err != nil {
		return OrganizationCounts{}, fmt.Errorf("counting projects and members: %w", err)
	}
	return c, nil
}

func insertAudit(ctx context.Context, tx pgx.Tx, actor Actor, action, target, orgID string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
		VALUES ($1, $2, $3, $4, $5, $6)`, actor.Name, action, target, nullUUID(orgID), actor.RequestID, details)
	if err != nil {
		return fmt.Errorf("writing the audit log: %w", err)
	}
	return nil
}

// nullUUID turns an empty id into SQL NULL.
func nullUUID(id string) any {
	if id == "" {
		return nil
	}
	return id
}
