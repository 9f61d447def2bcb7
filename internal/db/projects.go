package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Project is the row a Project custom resource produces.
type Project struct {
	// ID is the row id; when set on upsert, a row deleted by hand comes back with the same id.
	ID             string
	UID            string
	OrganizationID string
	Name           string
	DisplayName    string
}

const upsertProjectSQL = `
WITH upsert AS (
    INSERT INTO tenancy.projects AS p (id, uid, organization_id, name, display_name)
    SELECT coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, $5
    -- A row that already matches is left untouched: no lock, no write, so a resync only reads.
    WHERE NOT EXISTS (SELECT 1 FROM tenancy.projects x WHERE x.uid = $2::uuid
                      AND (x.organization_id, x.name, x.display_name) = ($3::uuid, $4::text, $5::text))
    ON CONFLICT (uid) DO UPDATE
        SET organization_id = excluded.organization_id, name = excluded.name,
            display_name = excluded.display_name, updated_at = now()
        WHERE (p.organization_id, p.name, p.display_name)
              IS DISTINCT FROM (excluded.organization_id, excluded.name, excluded.display_name)
    RETURNING p.id, (p.xmax = 0) AS inserted
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
    SELECT $6, CASE WHEN inserted THEN 'project.created' ELSE 'project.updated' END,
           'project/' || $4, $3, $7, jsonb_build_object('displayName', $5::text)
    FROM upsert
)
SELECT id, true FROM upsert
UNION ALL
SELECT id, false FROM tenancy.projects WHERE uid = $2
LIMIT 1`

// UpsertProject inserts or updates the project's row, keyed by the resource's uid, and audits a
// change. A row of the same name in the organization left by an earlier Project of that name is
// replaced. A missing organization row gives a foreign key violation (IsForeignKeyViolation).
// proj.ID is the id a new row gets; an existing row keeps its own. When another project's row has
// that id, it returns a *RowIDInUseError.
func (p *Postgres) UpsertProject(ctx context.Context, proj Project, actor Actor) (UpsertResult, error) {
	if err := p.ensureMigrated(); err != nil {
		return UpsertResult{}, err
	}
	result, err := p.upsertProject(ctx, proj, actor)
	// The orphan may hold the id asked for as well as the name.
	if isUniqueViolationOn(err, "projects_organization_id_name_key") || projectIDTaken(err) {
		if err := p.deleteOrphanProject(ctx, proj, actor); err != nil {
			return UpsertResult{}, err
		}
		result, err = p.upsertProject(ctx, proj, actor)
	}
	if projectIDTaken(err) {
		err = p.projectIDInUse(ctx, proj.ID, err)
	}
	if err != nil {
		return UpsertResult{}, fmt.Errorf("upserting project %s: %w", proj.Name, err)
	}
	return result, nil
}

// projectIDTaken reports whether err says that another project's row has the id asked for: the
// primary key, or the (organization_id, id) key when that row is in the same organization
// (PostgreSQL may report either).
func projectIDTaken(err error) bool {
	return isUniqueViolationOn(err, "projects_pkey") || isUniqueViolationOn(err, "projects_organization_id_id_key")
}

// projectIDInUse names the project whose row has id, which the violation says an upsert asked
// for; when that row is gone already, the violation stays, for a retry.
func (p *Postgres) projectIDInUse(ctx context.Context, id string, violation error) error {
	var project, org string
	err := p.pool.QueryRow(ctx, `
		SELECT p.name, o.name FROM tenancy.projects p JOIN tenancy.organizations o ON o.id = p.organization_id
		WHERE p.id = $1`, id).Scan(&project, &org)
	if err != nil {
		return violation
	}
	return &RowIDInUseError{ID: id, Holder: fmt.Sprintf("project %s of organization %s", project, org)}
}

func (p *Postgres) upsertProject(ctx context.Context, proj Project, actor Actor) (UpsertResult, error) {
	var r UpsertResult
	err := p.pool.QueryRow(ctx, upsertProjectSQL,
		nullUUID(proj.ID), proj.UID, proj.OrganizationID, proj.Name, proj.DisplayName, actor.Name, actor.RequestID,
	).Scan(&r.ID, &r.Changed)
	return r, err
}

func (p *Postgres) deleteOrphanProject(ctx context.Context, proj Project, actor Actor) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM tenancy.projects WHERE organization_id = $1 AND name = $2 AND uid <> $3",
			proj.OrganizationID, proj.Name, proj.UID)
		if err != nil {
			return fmt.Errorf("deleting the orphaned row of project %s: %w", proj.Name, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		return insertAudit(ctx, tx, actor, "project.orphan-replaced", "project/"+proj.Name, proj.OrganizationID, nil)
	})
}

// DeleteProject removes the project's row (and with it the memberships scoped to it) and revokes
// the API keys scoped to it. It is idempotent.
func (p *Postgres) DeleteProject(ctx context.Context, uid, name string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orgID, projectID string
		err := tx.QueryRow(ctx, "DELETE FROM tenancy.projects WHERE uid = $1 RETURNING organization_id, id", uid).Scan(&orgID, &projectID)
		if err == pgx.ErrNoRows {
			return nil
		}
		if err != nil {
			return err
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE tenancy.api_keys SET revoked_at = now() WHERE project_id = $1 AND revoked_at IS NULL", projectID)
		if err != nil {
			return fmt.Errorf("revoking the project's API keys: %w", err)
		}
		return insertAudit(ctx, tx, actor, "project.deleted", "project/"+name, orgID,
			map[string]any{"apiKeysRevoked": tag.RowsAffected()})
	})
	if err != nil {
		return fmt.Errorf("deleting project %s: %w", name, err)
	}
	return nil
}
