package authd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// refreshTokenPrefix marks authd's refresh tokens, for secret scanners and for humans.
const refreshTokenPrefix = "tnr_"

var (
	// errInvalidRefresh is a refresh token that is unknown, expired or revoked.
	errInvalidRefresh = errors.New("the refresh token is invalid, expired or revoked")
	// errRefreshReuse is a rotated refresh token presented again after the reuse interval: its
	// whole family has been revoked.
	errRefreshReuse = errors.New("the refresh token was already used; every session of its family is revoked")
)

// tenantIDs are the organization (or none) and maybe the project that a session's tokens are for.
type tenantIDs struct {
	OrgID     *string
	ProjectID *string
}

// sessionPolicy bounds refresh tokens.
type sessionPolicy struct {
	// TTL is how long one refresh token may wait for its use.
	TTL time.Duration
	// Lifetime caps a family: no refresh past it, however often tokens rotate.
	Lifetime time.Duration
	// ReuseInterval lets a rotated token be used once more this shortly after, by the client
	// that rotated it (a retry whose answer was lost); any other reuse means theft and revokes
	// the family.
	ReuseInterval time.Duration
}

// sessionKind tells a browser's session, whose cookie the web pages use without rotating it,
// from an API session, which rotates its refresh token at every refresh.
type sessionKind bool

const (
	apiSessionKind sessionKind = false
	webSessionKind sessionKind = true
)

// startSession creates the first refresh token of a new family; it returns the token and the
// family's id.
func (s *Store) startSession(ctx context.Context, userID string, ids tenantIDs, kind sessionKind, mfa bool, p sessionPolicy, c clientInfo) (token, familyID string, err error) {
	token, hash, err := newOpaqueToken(refreshTokenPrefix)
	if err != nil {
		return "", "", err
	}
	err = s.pool.QueryRow(ctx, `
		INSERT INTO tenancy.refresh_tokens (hash, family_id, user_id, organization_id, project_id, expires_at, family_expires_at, user_agent, client_address, web, mfa)
		VALUES ($1, gen_random_uuid(), $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6), $7, $8, $9, $10)
		RETURNING family_id`,
		hash, userID, ids.OrgID, ids.ProjectID, p.TTL.Seconds(), p.Lifetime.Seconds(), truncate(c.UserAgent, 256), c.Address, bool(kind), mfa).Scan(&familyID)
	if err != nil {
		return "", "", fmt.Errorf("starting a session: %w", err)
	}
	return token, familyID, nil
}

// startClientSession starts the session (refresh token family) of an OAuth client's sign-in.
func (s *Store) startClientSession(ctx context.Context, cs clientSession, p sessionPolicy, c clientInfo) (token, familyID string, err error) {
	token, hash, err := newOpaqueToken(refreshTokenPrefix)
	if err != nil {
		return "", "", err
	}
	err = s.pool.QueryRow(ctx, `
		INSERT INTO tenancy.refresh_tokens (hash, family_id, user_id, organization_id, project_id, expires_at, family_expires_at, user_agent,
		                                    client_address, mfa, client_uid, scopes, auth_time, nonce)
		VALUES ($1, gen_random_uuid(), $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6), $7, $8, $9, $10, $11, $12, $13)
		RETURNING family_id`,
		hash, cs.User.ID, cs.Access.OrgID, cs.Access.ProjectID, p.TTL.Seconds(), p.Lifetime.Seconds(), truncate(c.UserAgent, 256), c.Address,
		cs.MFA, cs.Client.UID, cs.Scopes, cs.AuthTime, nullIfEmpty(cs.Nonce)).Scan(&familyID)
	if err != nil {
		return "", "", fmt.Errorf("starting a client's session: %w", err)
	}
	return token, familyID, nil
}

// rotation is what rotate did.
type rotation struct {
	Token    string
	UserID   string
	FamilyID string
	Tenant   tenantIDs
	// MFA: the session began with a second factor.
	MFA bool
	// Scopes, AuthTime and Nonce are those of an OAuth client's session.
	Scopes   []string
	AuthTime *time.Time
	Nonce    *string
}

// rotate exchanges a refresh token for its successor. choose picks the organization and project
// of the new token from the user and those of the presented token (it may move the session to
// another organization the user belongs to), reading through q, the rotation's own transaction
// (a second connection per rotation would let concurrent rotations exhaust the pool); an error
// from it leaves the presented token unused. clientUID is the OAuth client presenting the token
// (nil for authd's own sessions): a token of another client, or of none, is invalid for it.
func (s *Store) rotate(ctx context.Context, presented string, p sessionPolicy, c clientInfo, clientUID *string,
	choose func(ctx context.Context, q querier, userID string, current tenantIDs, mfa bool) (tenantIDs, error)) (rotation, error) {
	var r rotation
	var familyRevoked bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Every change to a family holds its lock: a logout or a reuse detection then revokes
		// every token, including one a concurrent rotation was minting. The token is read after
		// the lock is taken.
		err := tx.QueryRow(ctx, `SELECT family_id FROM tenancy.refresh_tokens WHERE hash = $1`, hashOf(presented)).Scan(&r.FamilyID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errInvalidRefresh
		}
		if err != nil {
			return err
		}
		if err := lockFamily(ctx, tx, r.FamilyID); err != nil {
			return err
		}
		var id string
		var tokenClient *string
		var web, rotated, withinGrace, reusedBefore, sameClient, revoked, expired bool
		var current tenantIDs
		// sameClient: the request comes from the address and user agent that rotated the token
		// (recorded on its successor).
		if err := tx.QueryRow(ctx, `
			SELECT t.id, t.user_id, t.organization_id, t.project_id, t.web, t.mfa, t.rotated_at IS NOT NULL,
			       coalesce(now() - t.rotated_at <= make_interval(secs => $2), false), t.reused_at IS NOT NULL,
			       EXISTS (SELECT 1 FROM tenancy.refresh_tokens c WHERE c.family_id = t.family_id AND c.parent_id = t.id
			               AND c.client_address = $3 AND c.user_agent = $4),
			       t.revoked_at IS NOT NULL, now() >= t.expires_at OR now() >= t.family_expires_at,
			       t.client_uid, t.scopes, t.auth_time, t.nonce
			FROM tenancy.refresh_tokens t WHERE t.hash = $1`, hashOf(presented), p.ReuseInterval.Seconds(), c.Address, truncate(c.UserAgent, 256)).
			Scan(&id, &r.UserID, &current.OrgID, &current.ProjectID, &web, &r.MFA, &rotated, &withinGrace, &reusedBefore, &sameClient, &revoked, &expired,
				&tokenClient, &r.Scopes, &r.AuthTime, &r.Nonce); err != nil {
			return err
		}
		if (tokenClient == nil) != (clientUID == nil) || (tokenClient != nil && *tokenClient != *clientUID) {
			// Another client's token: not a reuse of this family, and nothing to reveal.
			return errInvalidRefresh
		}
		var familyRevokedAlready bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenancy.refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL)`,
			r.FamilyID).Scan(&familyRevokedAlready); err != nil {
			return err
		}
		switch {
		case web || revoked || expired || familyRevokedAlready:
			// A browser session's cookie is for the web pages only: it never rotates here.
			return errInvalidRefresh
		case rotated && (!withinGrace || reusedBefore || !sameClient):
			if _, err := tx.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL`, r.FamilyID); err != nil {
				return err
			}
			familyRevoked = true
			return nil // commit the revocation, then report the reuse
		}
		if r.Tenant, err = choose(ctx, tx, r.UserID, current, r.MFA); err != nil {
			return err
		}
		// The first use rotates the token; the one reuse allowed is recorded, so that a third
		// use revokes the family.
		if _, err := tx.Exec(ctx, `UPDATE tenancy.refresh_tokens
			SET rotated_at = coalesce(rotated_at, now()), reused_at = CASE WHEN rotated_at IS NULL THEN NULL ELSE now() END
			WHERE id = $1`, id); err != nil {
			return err
		}
		var hash []byte
		if r.Token, hash, err = newOpaqueToken(refreshTokenPrefix); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO tenancy.refresh_tokens (hash, family_id, parent_id, user_id, organization_id, project_id, expires_at, family_expires_at, user_agent, client_address, mfa,
			                                    client_uid, scopes, auth_time, nonce)
			SELECT $1, family_id, id, user_id, $2, $3, least(now() + make_interval(secs => $4), family_expires_at), family_expires_at, $5, $6, mfa,
			       client_uid, scopes, auth_time, nonce
			FROM tenancy.refresh_tokens WHERE id = $7`,
			hash, r.Tenant.OrgID, r.Tenant.ProjectID, p.TTL.Seconds(), truncate(c.UserAgent, 256), c.Address, id)
		return err
	})
	if err == nil && familyRevoked {
		err = errRefreshReuse
	}
	return r, err
}

// endSession revokes the family of a refresh token; it returns the user, or "" when the token is
// unknown.
func (s *Store) endSession(ctx context.Context, presented string) (userID string, orgID *string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var familyID string
		err := tx.QueryRow(ctx, `SELECT family_id, user_id, organization_id FROM tenancy.refresh_tokens WHERE hash = $1`,
			hashOf(presented)).Scan(&familyID, &userID, &orgID)
		if err != nil {
			return err
		}
		if err := lockFamily(ctx, tx, familyID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL`, familyID)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil
	}
	return userID, orgID, err
}

// lockFamily serializes the changes to one refresh token family until tx ends.
func lockFamily(ctx context.Context, tx pgx.Tx, familyID string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('tenancy.session/' || $1, 0))", familyID)
	return err
}

// refreshTokenState answers introspection for a refresh token.
func (s *Store) refreshTokenState(ctx context.Context, presented string) (active bool, userID string, orgID *string, expires time.Time, err error) {
	err = s.pool.QueryRow(ctx, `
		SELECT t.revoked_at IS NULL AND t.rotated_at IS NULL AND now() < t.expires_at AND now() < t.family_expires_at AND NOT u.disabled,
		       t.user_id, t.organization_id, least(t.expires_at, t.family_expires_at)
		FROM tenancy.refresh_tokens t JOIN tenancy.users u ON u.id = t.user_id WHERE t.hash = $1`, hashOf(presented)).
		Scan(&active, &userID, &orgID, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil, time.Time{}, nil
	}
	return active, userID, orgID, expires, err
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
	// MFA: the session began with a second factor.
	MFA bool
	// AuthTime is when the person logged in (a browser's session never rotates its token).
	AuthTime time.Time
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
		SELECT t.id, t.family_id, u.id, u.email::text, u.display_name, u.password_hash, u.disabled, u.email_verified_at IS NOT NULL, t.mfa, t.created_at,
		       t.expires_at < least(now() + make_interval(secs => $2) - interval '1 hour', t.family_expires_at)
		FROM tenancy.refresh_tokens t JOIN tenancy.users u ON u.id = t.user_id
		WHERE t.hash = $1 AND t.web AND t.rotated_at IS NULL AND t.revoked_at IS NULL
		  AND now() < t.expires_at AND now() < t.family_expires_at AND NOT u.disabled
		  AND NOT EXISTS (SELECT 1 FROM tenancy.refresh_tokens r WHERE r.family_id = t.family_id AND r.revoked_at IS NOT NULL)`,
		hashOf(token), p.TTL.Seconds()).
		Scan(&id, &w.FamilyID, &w.User.ID, &w.User.Email, &w.User.DisplayName, &w.User.PasswordHash, &w.User.Disabled, &w.User.EmailVerified, &w.MFA, &w.AuthTime, &slide)
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
