package authd

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditLog reads an organization's audit rows, newest first: limit rows with an id below before
// (0: from the newest).
func (s *Store) auditLog(ctx context.Context, orgID string, before int64, limit int) ([]auditRecord, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, at, actor, action, target, request_id, details FROM tenancy.audit_log
		WHERE organization_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)
		ORDER BY id DESC LIMIT $3`, orgID, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (auditRecord, error) {
		var a auditRecord
		err := row.Scan(&a.ID, &a.At, &a.Actor, &a.Action, &a.Target, &a.RequestID, &a.Details)
		a.At = a.At.UTC()
		return a, err
	})
}

// session is one of a user's live sessions: a refresh token family nobody has revoked that
// has not expired.
type session struct {
	ID            string    `json:"id"`
	Organization  string    `json:"organization,omitempty"`
	Started       time.Time `json:"startedAt"`
	LastRefreshed time.Time `json:"lastRefreshedAt"`
	Expires       time.Time `json:"expiresAt"`
	UserAgent     string    `json:"userAgent"`
	ClientAddress string    `json:"clientAddress"`
	Current       bool      `json:"current"`
}

// sessions lists a user's live sessions, newest first; current marks the caller's own.
func (s *Store) sessions(ctx context.Context, userID, current string) ([]session, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT ON (t.family_id) t.family_id, coalesce(o.name, ''), first.created_at, t.created_at,
		       least(t.expires_at, t.family_expires_at), t.user_agent, t.client_address
		FROM tenancy.refresh_tokens t
		LEFT JOIN tenancy.organizations o ON o.id = t.organization_id
		JOIN LATERAL (SELECT min(created_at) AS created_at FROM tenancy.refresh_tokens f WHERE f.family_id = t.family_id) first ON true
		WHERE t.user_id = $1 AND t.rotated_at IS NULL AND t.revoked_at IS NULL
		  AND now() < t.expires_at AND now() < t.family_expires_at
		  AND NOT EXISTS (SELECT 1 FROM tenancy.refresh_tokens r WHERE r.family_id = t.family_id AND r.revoked_at IS NOT NULL)
		ORDER BY t.family_id, t.created_at DESC`, userID)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (session, error) {
		var v session
		err := row.Scan(&v.ID, &v.Organization, &v.Started, &v.LastRefreshed, &v.Expires, &v.UserAgent, &v.ClientAddress)
		v.Current = v.ID == current
		v.Started, v.LastRefreshed, v.Expires = v.Started.UTC(), v.LastRefreshed.UTC(), v.Expires.UTC()
		return v, err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b session) int { return b.LastRefreshed.Compare(a.LastRefreshed) })
	return list, nil
}

// endSessions revokes the user's live sessions (those that sessions lists): the one with id
// family, or, with family "", every one but keep. It returns the ids of the sessions it ended.
func (s *Store) endSessions(ctx context.Context, userID, family, keep string) ([]string, error) {
	var ended []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT DISTINCT family_id::text FROM tenancy.refresh_tokens t
			WHERE user_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND now() < expires_at AND now() < family_expires_at
			  AND ($2 = '' OR family_id::text = $2) AND family_id::text <> $3
			  AND NOT EXISTS (SELECT 1 FROM tenancy.refresh_tokens r WHERE r.family_id = t.family_id AND r.revoked_at IS NOT NULL)
			ORDER BY 1`, userID, family, keep)
		if err != nil {
			return err
		}
		if ended, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		for _, id := range ended {
			if err := lockFamily(ctx, tx, id); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE family_id = ANY($1::uuid[]) AND revoked_at IS NULL`, ended)
		return err
	})
	return ended, err
}

// webSession is the session behind a browser's cookie.
type webSession struct {
	User     user
	FamilyID string
}

// errNoWebSession is a cookie whose session is unknown, ended, expired or was used elsewhere.
var errNoWebSession = errors.New("no live session")

// webSession finds the live session of a cookie's refresh token. Pages use the token without
// rotating it, and slide its expiry forward at most once an hour: a rotated token means someone
// refreshed with it, and the cookie no longer counts.
func (s *Store) webSession(ctx context.Context, token string, p sessionPolicy) (webSession, error) {
	var w webSession
	var id string
	var slide bool
	err := s.pool.QueryRow(ctx, `
		SELECT t.id, t.family_id, u.id, u.email::text, u.display_name, u.password_hash, u.disabled,
		       t.expires_at < least(now() + make_interval(secs => $2) - interval '1 hour', t.family_expires_at)
		FROM tenancy.refresh_tokens t JOIN tenancy.users u ON u.id = t.user_id
		WHERE t.hash = $1 AND t.web AND t.rotated_at IS NULL AND t.revoked_at IS NULL
		  AND now() < t.expires_at AND now() < t.family_expires_at AND NOT u.disabled
		  AND NOT EXISTS (SELECT 1 FROM tenancy.refresh_tokens r WHERE r.family_id = t.family_id AND r.revoked_at IS NOT NULL)`,
		hashOf(token), p.TTL.Seconds()).
		Scan(&id, &w.FamilyID, &w.User.ID, &w.User.Email, &w.User.DisplayName, &w.User.PasswordHash, &w.User.Disabled, &slide)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, errNoWebSession
	}
	if err != nil {
		return w, err
	}
	if slide {
		_, err = s.pool.Exec(ctx, `UPDATE tenancy.refresh_tokens SET expires_at = least(now() + make_interval(secs => $2), family_expires_at) WHERE id = $1`,
			id, p.TTL.Seconds())
	}
	return w, err
}

// invitationPreview is what the invitation page shows before it is accepted.
type invitationPreview struct {
	Email       string
	Org         string
	Project     string
	Role        string
	HasPassword bool
}

// previewInvitation reads an open invitation without using it.
func (s *Store) previewInvitation(ctx context.Context, token string) (invitationPreview, error) {
	var p invitationPreview
	err := s.pool.QueryRow(ctx, `
		SELECT u.email::text, coalesce(nullif(o.display_name, ''), o.name), coalesce(pr.name, ''), m.role::text, u.password_hash IS NOT NULL
		FROM tenancy.invitations i
		JOIN tenancy.memberships m ON m.id = i.membership_id
		JOIN tenancy.users u ON u.id = m.user_id
		JOIN tenancy.organizations o ON o.id = m.organization_id
		LEFT JOIN tenancy.projects pr ON pr.id = m.project_id
		WHERE i.hash = $1 AND i.used_at IS NULL AND i.expires_at > now() AND NOT u.disabled`, hashOf(token)).
		Scan(&p.Email, &p.Org, &p.Project, &p.Role, &p.HasPassword)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, errInvalidInvitation
	}
	return p, err
}
