package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// APIKey describes the key an APIKey custom resource wants; the key material is in NewAPIKey.
type APIKey struct {
	UID            string
	Name           string
	OrganizationID string
	ProjectID      string // empty: the whole organization
	Role           string
	Rotation       string
	ExpiresAt      *time.Time
}

// APIKeyRow is the current (not superseded) key row of an APIKey resource.
type APIKeyRow struct {
	ID        string
	KeyID     string
	Prefix    string
	Rotation  string
	Revoked   bool
	CreatedAt time.Time
}

// NewAPIKey is the public part and the hash of a freshly generated key.
type NewAPIKey struct {
	KeyID  string
	Prefix string
	Hash   []byte
}

// CurrentAPIKey returns the resource's current key row, or nil when it has none.
func (p *Postgres) CurrentAPIKey(ctx context.Context, uid string) (*APIKeyRow, error) {
	if err := p.ensureMigrated(); err != nil {
		return nil, err
	}
	var r APIKeyRow
	err := p.pool.QueryRow(ctx, `
		SELECT id, key_id, prefix, rotation, revoked_at IS NOT NULL, created_at
		FROM tenancy.api_keys WHERE uid = $1 AND superseded_at IS NULL`, uid).
		Scan(&r.ID, &r.KeyID, &r.Prefix, &r.Rotation, &r.Revoked, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the current API key: %w", err)
	}
	return &r, nil
}

// IssueAPIKey records a new current key for the resource. The previous current key, if any, is
// superseded and keeps working until now+grace (or its own expiry, if sooner). reason says why a
// key was issued, for the audit log.
func (p *Postgres) IssueAPIKey(ctx context.Context, k APIKey, key NewAPIKey, grace time.Duration, reason string, actor Actor) (APIKeyRow, error) {
	if err := p.ensureMigrated(); err != nil {
		return APIKeyRow{}, err
	}
	var r APIKeyRow
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var superseded []string
		rows, err := tx.Query(ctx, `
			UPDATE tenancy.api_keys
			SET superseded_at = now(),
			    -- least() skips NULLs: the earliest of the key's own expiry, the grace period and
			    -- the spec's new expiry; a demotion in the same change applies to it as well.
			    expires_at = CASE WHEN revoked_at IS NULL THEN least(expires_at, now() + $2::interval, $3::timestamptz) ELSE expires_at END,
			    role = least(role, $4::tenancy.role)
			WHERE uid = $1 AND superseded_at IS NULL
			RETURNING key_id`, k.UID, grace, k.ExpiresAt, k.Role)
		if err != nil {
			return fmt.Errorf("superseding the previous key: %w", err)
		}
		if superseded, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("superseding the previous key: %w", err)
		}
		err = tx.QueryRow(ctx, `
			INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role, rotation, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			RETURNING id, key_id, prefix, rotation, false, created_at`,
			k.UID, k.Name, k.OrganizationID, nullUUID(k.ProjectID), key.KeyID, key.Prefix, key.Hash, k.Role, k.Rotation, k.ExpiresAt,
		).Scan(&r.ID, &r.KeyID, &r.Prefix, &r.Rotation, &r.Revoked, &r.CreatedAt)
		if err != nil {
			return fmt.Errorf("inserting the key: %w", err)
		}
		action := "apikey.issued"
		details := map[string]any{"keyID": key.KeyID, "role": k.Role, "reason": reason}
		if len(superseded) > 0 {
			action = "apikey.rotated"
			details["previousKeyID"] = superseded[0]
			details["graceSeconds"] = int64(grace.Seconds())
		}
		return insertAudit(ctx, tx, actor, action, "apikey/"+k.Name, k.OrganizationID, details)
	})
	if err != nil {
		return APIKeyRow{}, fmt.Errorf("issuing API key %s: %w", k.Name, err)
	}
	return r, nil
}

// SyncAPIKey makes the current key row match the resource's role, project and expiry, and
// reports whether it had to change it.
func (p *Postgres) SyncAPIKey(ctx context.Context, k APIKey, actor Actor) (bool, error) {
	if err := p.ensureMigrated(); err != nil {
		return false, err
	}
	changed := false
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE tenancy.api_keys
			SET role = $2, organization_id = $3, project_id = $4, expires_at = $5,
			    expiry_noticed_at = CASE WHEN expires_at IS DISTINCT FROM $5 THEN NULL ELSE expiry_noticed_at END
			WHERE uid = $1 AND superseded_at IS NULL
			  AND (role, organization_id, project_id, expires_at) IS DISTINCT FROM ($2::tenancy.role, $3::uuid, $4::uuid, $5::timestamptz)`,
			k.UID, k.Role, k.OrganizationID, nullUUID(k.ProjectID), k.ExpiresAt)
		if err != nil {
			return err
		}
		// Keys still in their rotation grace period follow a demotion or an earlier expiry too.
		if _, err := tx.Exec(ctx, `
			UPDATE tenancy.api_keys
			SET role = least(role, $2::tenancy.role), expires_at = least(expires_at, $3::timestamptz)
			WHERE uid = $1 AND superseded_at IS NOT NULL AND revoked_at IS NULL
			  AND (role > $2::tenancy.role OR expires_at > $3::timestamptz)`,
			k.UID, k.Role, k.ExpiresAt); err != nil {
			return err
		}
		if changed = tag.RowsAffected() > 0; !changed {
			return nil
		}
		return insertAudit(ctx, tx, actor, "apikey.updated", "apikey/"+k.Name, k.OrganizationID,
			map[string]any{"role": k.Role, "expiresAt": k.ExpiresAt})
	})
	if err != nil {
		return false, fmt.Errorf("updating API key %s: %w", k.Name, err)
	}
	return changed, nil
}

// RevokeAPIKeys revokes every key the resource ever had, at once, and keeps the rows for audit.
// It is idempotent.
func (p *Postgres) RevokeAPIKeys(ctx context.Context, uid, name string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE tenancy.api_keys SET revoked_at = now()
			WHERE uid = $1 AND revoked_at IS NULL
			RETURNING organization_id::text`, uid)
		if err != nil {
			return err
		}
		orgs, err := pgx.CollectRows(rows, pgx.RowTo[*string])
		if err != nil || len(orgs) == 0 {
			return err
		}
		org := ""
		if orgs[0] != nil {
			org = *orgs[0]
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		return insertAudit(ctx, tx, actor, "apikey.revoked", "apikey/"+name, org, map[string]any{"keys": len(orgs)})
	})
	if err != nil {
		return fmt.Errorf("revoking API key %s: %w", name, err)
	}
	return nil
}

// NoticeAPIKeyExpiry tells the Owners and Admins of the key's organization (organization-wide,
// Active, not disabled) that the key expires soon, once per key row and expiry: it marks the row
// and queues a mail to each (compose renders it) in one transaction. It answers how many mails
// it queued; 0 when the row was noticed already, superseded or revoked.
func (p *Postgres) NoticeAPIKeyExpiry(ctx context.Context, keyRowID string, actor Actor, compose func(to string) (mail.Message, error)) (int, error) {
	if err := p.ensureMigrated(); err != nil {
		return 0, err
	}
	queued := 0
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orgID, name string
		err := tx.QueryRow(ctx, `
			UPDATE tenancy.api_keys SET expiry_noticed_at = now()
			WHERE id = $1 AND expiry_noticed_at IS NULL AND superseded_at IS NULL AND revoked_at IS NULL
			RETURNING organization_id, name`, keyRowID).Scan(&orgID, &name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT DISTINCT u.email::text FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
			WHERE m.organization_id = $1 AND m.project_id IS NULL AND m.state = 'Active' AND m.role IN ('Owner', 'Admin') AND NOT u.disabled
			ORDER BY 1`, orgID)
		if err != nil {
			return err
		}
		recipients, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, to := range recipients {
			msg, err := compose(to)
			if err != nil {
				return err
			}
			if err := mail.Enqueue(ctx, tx, msg); err != nil {
				return err
			}
		}
		queued = len(recipients)
		_, err = tx.Exec(ctx, `INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
			VALUES ($1, 'apikey.expiry_noticed', 'apikey/' || $2, $3, $4, jsonb_build_object('recipients', $5::int))`,
			actor.Name, name, orgID, actor.RequestID, queued)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("noticing the expiry of API key %s: %w", keyRowID, err)
	}
	return queued, nil
}
