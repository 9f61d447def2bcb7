package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OAuthClient is the row an OAuthClient custom resource produces in tenancy.oauth_clients,
// which authd reads.
type OAuthClient struct {
	UID       string
	ClientID  string // <name>.<namespace>
	Namespace string
	Name      string
	// OrganizationID is empty for a platform-wide client (in the operator's namespace).
	OrganizationID         string
	DisplayName            string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	FirstParty             bool
	GrantTypes             []string
	Scopes                 []string
	// AccessTokenTTL and RefreshTokenTTL are nil when the client sets none: authd's own limits
	// apply.
	AccessTokenTTL  *time.Duration
	RefreshTokenTTL *time.Duration
}

// OAuthClientSecretRow is a confidential client's current secret (the one without expires_at).
type OAuthClientSecretRow struct {
	Hash      []byte
	Rotation  string
	CreatedAt time.Time
}

// upsertOAuthClientSQL writes the client's row, keyed by the resource's uid, and audits the
// change in the same statement. A row that already matches is left untouched (no lock, no
// write), so a resync only reads. It answers whether it wrote, and whether it inserted.
const upsertOAuthClientSQL = `
WITH upsert AS (
    INSERT INTO tenancy.oauth_clients AS c (uid, client_id, namespace, name, organization_id, display_name, redirect_uris,
                                            post_logout_redirect_uris, public, first_party, grant_types, scopes,
                                            access_token_ttl, refresh_token_ttl)
    SELECT $1::uuid, $2::text, $3::text, $4::text, $5::uuid, $6::text, $7::text[], $8::text[], $9::boolean, $10::boolean,
           $11::text[], $12::text[], $13::interval, $14::interval
    WHERE NOT EXISTS (
        SELECT 1 FROM tenancy.oauth_clients x WHERE x.uid = $1::uuid
           AND (x.client_id, x.namespace, x.name, x.organization_id, x.display_name, x.redirect_uris, x.post_logout_redirect_uris,
                x.public, x.first_party, x.grant_types, x.scopes, x.access_token_ttl, x.refresh_token_ttl)
               IS NOT DISTINCT FROM ($2::text, $3::text, $4::text, $5::uuid, $6::text, $7::text[], $8::text[], $9::boolean,
                                     $10::boolean, $11::text[], $12::text[], $13::interval, $14::interval))
    ON CONFLICT (uid) DO UPDATE
        SET client_id = excluded.client_id, namespace = excluded.namespace, name = excluded.name,
            organization_id = excluded.organization_id, display_name = excluded.display_name,
            redirect_uris = excluded.redirect_uris, post_logout_redirect_uris = excluded.post_logout_redirect_uris,
            public = excluded.public, first_party = excluded.first_party, grant_types = excluded.grant_types,
            scopes = excluded.scopes, access_token_ttl = excluded.access_token_ttl,
            refresh_token_ttl = excluded.refresh_token_ttl, updated_at = now()
        WHERE (c.client_id, c.namespace, c.name, c.organization_id, c.display_name, c.redirect_uris, c.post_logout_redirect_uris,
               c.public, c.first_party, c.grant_types, c.scopes, c.access_token_ttl, c.refresh_token_ttl)
              IS DISTINCT FROM (excluded.client_id, excluded.namespace, excluded.name, excluded.organization_id,
                                excluded.display_name, excluded.redirect_uris, excluded.post_logout_redirect_uris,
                                excluded.public, excluded.first_party, excluded.grant_types, excluded.scopes,
                                excluded.access_token_ttl, excluded.refresh_token_ttl)
    RETURNING (c.xmax = 0) AS inserted
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
    SELECT $15, CASE WHEN inserted THEN 'oauthclient.registered' ELSE 'oauthclient.updated' END,
           'oauthclient/' || $2::text, $5::uuid, $16,
           jsonb_build_object('displayName', $6::text, 'redirectURIs', $7::text[], 'postLogoutRedirectURIs', $8::text[],
                              'public', $9::boolean, 'firstParty', $10::boolean, 'grantTypes', $11::text[],
                              'scopes', $12::text[], 'accessTokenTTL', $13::interval, 'refreshTokenTTL', $14::interval)
    FROM upsert
)
SELECT true, inserted FROM upsert
UNION ALL
SELECT false, false
LIMIT 1`

// UpsertOAuthClient inserts or updates the client's row and audits a change
// (oauthclient.registered, oauthclient.updated); Changed says whether it wrote, ID is the client
// id. A row left by an earlier object of the same namespace and name (whose clean-up never ran)
// is replaced, with the secrets, codes, consents and sessions that went with it. A missing
// organization row gives a foreign key violation (IsForeignKeyViolation).
func (p *Postgres) UpsertOAuthClient(ctx context.Context, c OAuthClient, actor Actor) (UpsertResult, error) {
	if err := p.ensureMigrated(); err != nil {
		return UpsertResult{}, err
	}
	result, err := p.upsertOAuthClient(ctx, c, actor)
	if isUniqueViolationOn(err, "oauth_clients_client_id_key") || isUniqueViolationOn(err, "oauth_clients_namespace_name_key") {
		if err := p.deleteOrphanOAuthClient(ctx, c, actor); err != nil {
			return UpsertResult{}, err
		}
		result, err = p.upsertOAuthClient(ctx, c, actor)
	}
	if err != nil {
		return UpsertResult{}, fmt.Errorf("upserting OAuth client %s: %w", c.ClientID, err)
	}
	return result, nil
}

func (p *Postgres) upsertOAuthClient(ctx context.Context, c OAuthClient, actor Actor) (UpsertResult, error) {
	r := UpsertResult{ID: c.ClientID}
	var inserted bool
	err := p.pool.QueryRow(ctx, upsertOAuthClientSQL,
		c.UID, c.ClientID, c.Namespace, c.Name, nullUUID(c.OrganizationID), c.DisplayName,
		nonNil(c.RedirectURIs), nonNil(c.PostLogoutRedirectURIs), c.Public, c.FirstParty, nonNil(c.GrantTypes), nonNil(c.Scopes),
		c.AccessTokenTTL, c.RefreshTokenTTL, actor.Name, actor.RequestID,
	).Scan(&r.Changed, &inserted)
	return r, err
}

func (p *Postgres) deleteOrphanOAuthClient(ctx context.Context, c OAuthClient, actor Actor) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orgID *string
		err := tx.QueryRow(ctx, `
			DELETE FROM tenancy.oauth_clients WHERE (client_id = $1 OR (namespace = $2 AND name = $3)) AND uid <> $4
			RETURNING organization_id::text`, c.ClientID, c.Namespace, c.Name, c.UID).Scan(&orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("deleting the orphaned row of OAuth client %s: %w", c.ClientID, err)
		}
		return insertAudit(ctx, tx, actor, "oauthclient.orphan-replaced", "oauthclient/"+c.ClientID, deref(orgID), nil)
	})
}

// CurrentOAuthClientSecret returns the client's current secret row, or nil when it has none.
func (p *Postgres) CurrentOAuthClientSecret(ctx context.Context, uid string) (*OAuthClientSecretRow, error) {
	if err := p.ensureMigrated(); err != nil {
		return nil, err
	}
	var r OAuthClientSecretRow
	err := p.pool.QueryRow(ctx, `
		SELECT secret_hash, rotation, created_at FROM tenancy.oauth_client_secrets
		WHERE client_uid = $1 AND expires_at IS NULL`, uid).Scan(&r.Hash, &r.Rotation, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the current client secret: %w", err)
	}
	return &r, nil
}

// IssueOAuthClientSecret records hash as the client's current secret, for spec.rotation
// rotation. The previous current secret, if any, keeps working until now+grace; secrets whose
// grace period is over are deleted. The client's row must exist. reason says why a secret was
// issued, for the audit log: oauthclient.secret_rotated when a previous secret was rotated out,
// oauthclient.secret_issued otherwise.
func (p *Postgres) IssueOAuthClientSecret(ctx context.Context, c OAuthClient, hash []byte, rotation string, grace time.Duration, reason string, actor Actor) (OAuthClientSecretRow, error) {
	if err := p.ensureMigrated(); err != nil {
		return OAuthClientSecretRow{}, err
	}
	r := OAuthClientSecretRow{Hash: hash, Rotation: rotation}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM tenancy.oauth_client_secrets WHERE client_uid = $1 AND expires_at <= now()", c.UID); err != nil {
			return fmt.Errorf("deleting expired secrets: %w", err)
		}
		tag, err := tx.Exec(ctx, `
			UPDATE tenancy.oauth_client_secrets SET expires_at = now() + $2::interval
			WHERE client_uid = $1 AND expires_at IS NULL`, c.UID, grace)
		if err != nil {
			return fmt.Errorf("rotating out the previous secret: %w", err)
		}
		err = tx.QueryRow(ctx, `
			INSERT INTO tenancy.oauth_client_secrets (client_uid, secret_hash, rotation) VALUES ($1, $2, $3)
			RETURNING created_at`, c.UID, hash, rotation).Scan(&r.CreatedAt)
		if err != nil {
			return fmt.Errorf("inserting the secret: %w", err)
		}
		action := "oauthclient.secret_issued"
		details := map[string]any{"reason": reason, "rotation": rotation}
		if tag.RowsAffected() > 0 {
			action = "oauthclient.secret_rotated"
			details["graceSeconds"] = int64(grace.Seconds())
		}
		return insertAudit(ctx, tx, actor, action, "oauthclient/"+c.ClientID, c.OrganizationID, details)
	})
	if err != nil {
		return OAuthClientSecretRow{}, fmt.Errorf("issuing a secret for OAuth client %s: %w", c.ClientID, err)
	}
	return r, nil
}

// DeleteOAuthClientSecrets deletes every secret of the client: a public client has none.
func (p *Postgres) DeleteOAuthClientSecrets(ctx context.Context, uid string) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, "DELETE FROM tenancy.oauth_client_secrets WHERE client_uid = $1", uid); err != nil {
		return fmt.Errorf("deleting the secrets of a public client: %w", err)
	}
	return nil
}

// DeleteOAuthClient deletes the client's row; its secrets, codes, consents and refresh tokens go
// with it, so every session of the client ends at once. It audits oauthclient.deleted with who
// asked for the deletion, and is idempotent.
func (p *Postgres) DeleteOAuthClient(ctx context.Context, uid, clientID string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var sessions int64
		if err := tx.QueryRow(ctx, `
			SELECT count(DISTINCT family_id) FROM tenancy.refresh_tokens
			WHERE client_uid = $1 AND revoked_at IS NULL AND family_expires_at > now()`, uid).Scan(&sessions); err != nil {
			return fmt.Errorf("counting the client's sessions: %w", err)
		}
		var orgID *string
		err := tx.QueryRow(ctx, "DELETE FROM tenancy.oauth_clients WHERE uid = $1 RETURNING organization_id::text", uid).Scan(&orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		return insertAudit(ctx, tx, actor, "oauthclient.deleted", "oauthclient/"+clientID, deref(orgID),
			map[string]any{"sessionsEnded": sessions})
	})
	if err != nil {
		return fmt.Errorf("deleting OAuth client %s: %w", clientID, err)
	}
	return nil
}

// nonNil turns a nil list into an empty one: the list columns are NOT NULL.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
