package authd

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// The database side of the OpenID Connect provider: consents and authorization codes.

// asynchronousCommit, as a CTE that the statement reads, makes the statement's own transaction
// commit without waiting for its WAL to reach the disk. Codes are written and spent this way: a
// crash of PostgreSQL may forget the last fraction of a second of them, which at worst lets a
// code that was spent right before the crash be presented once more within its 60 seconds, still
// bound to its client, redirect URI and PKCE verifier; sessions and everything else stay
// synchronous.
const asynchronousCommit = `SELECT set_config('synchronous_commit', 'off', true)`

// codeLifetime bounds an authorization code; RFC 6749 section 4.1.2 recommends at most 10 minutes,
// a client exchanges it within seconds.
const codeLifetime = 60 * time.Second

// authorizationCode is what a code stands for.
type authorizationCode struct {
	ClientUID     string
	UserID        string
	OrgID         string
	RedirectURI   string
	CodeChallenge string
	Scopes        []string
	Nonce         string
	AuthTime      time.Time
	MFA           bool
}

// hasConsent reports whether the user allowed the client every scope of scopes in organization orgID.
func (s *Store) hasConsent(ctx context.Context, userID, clientUID, orgID string, scopes []string) (bool, error) {
	var granted []string
	err := s.pool.QueryRow(ctx, `SELECT scopes FROM tenancy.oauth_consents WHERE user_id = $1 AND client_uid = $2 AND organization_id = $3`,
		userID, clientUID, orgID).Scan(&granted)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, sc := range scopes {
		if !slices.Contains(granted, sc) {
			return false, nil
		}
	}
	return true, nil
}

// grantConsent records that the user allowed the client scopes in organization orgID (adding to
// what they allowed before there).
func (s *Store) grantConsent(ctx context.Context, userID, clientUID, orgID string, scopes []string) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO tenancy.oauth_consents (user_id, client_uid, organization_id, scopes) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, client_uid, organization_id) DO UPDATE
		SET scopes = ARRAY(SELECT DISTINCT unnest(tenancy.oauth_consents.scopes || EXCLUDED.scopes) ORDER BY 1), granted_at = now()`,
		userID, clientUID, orgID, scopes)
	return err
}

// appConsent is a client a person allowed in an organization, for the account page.
type appConsent struct {
	ClientID     string
	DisplayName  string
	Organization string
	Scopes       []string
	GrantedAt    time.Time
}

// consents lists the clients the user allowed.
func (s *Store) consents(ctx context.Context, userID string) ([]appConsent, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.client_id, c.display_name, o.name, k.scopes, k.granted_at
		FROM tenancy.oauth_consents k JOIN tenancy.oauth_clients c ON c.uid = k.client_uid
		JOIN tenancy.organizations o ON o.id = k.organization_id
		WHERE k.user_id = $1 ORDER BY c.display_name, c.client_id, o.name`, userID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (appConsent, error) {
		var a appConsent
		return a, row.Scan(&a.ClientID, &a.DisplayName, &a.Organization, &a.Scopes, &a.GrantedAt)
	})
}

// revokeConsent forgets the user's consents to the client (in every organization) and ends the
// client's sessions of the user; it reports whether there was a consent.
func (s *Store) revokeConsent(ctx context.Context, userID, clientID string) (bool, error) {
	var revoked bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			DELETE FROM tenancy.oauth_consents k USING tenancy.oauth_clients c
			WHERE k.client_uid = c.uid AND k.user_id = $1 AND c.client_id = $2`, userID, clientID)
		if err != nil {
			return err
		}
		revoked = tag.RowsAffected() > 0
		_, err = tx.Exec(ctx, `
			UPDATE tenancy.refresh_tokens t SET revoked_at = now() FROM tenancy.oauth_clients c
			WHERE t.client_uid = c.uid AND c.client_id = $2 AND t.user_id = $1 AND t.revoked_at IS NULL`, userID, clientID)
		return err
	})
	return revoked, err
}

// newAuthorizationCode stores a code for c and returns it.
func (s *Store) newAuthorizationCode(ctx context.Context, c authorizationCode) (string, error) {
	code, hash, err := newOpaqueToken("")
	if err != nil {
		return "", err
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO tenancy.oauth_codes (code_hash, client_uid, user_id, organization_id, redirect_uri, code_challenge, scopes, nonce,
		                                 auth_time, mfa, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11))`,
		hash, c.ClientUID, c.UserID, c.OrgID, c.RedirectURI, c.CodeChallenge, c.Scopes, c.Nonce, c.AuthTime, c.MFA, codeLifetime.Seconds())
	// Expired codes go with every new one, so the table stays as small as the traffic of a minute.
	if err == nil {
		_, err = s.pool.Exec(ctx, `DELETE FROM tenancy.oauth_codes WHERE expires_at < now() - interval '1 hour'`)
	}
	return code, err
}

// Why a code is refused; each is invalid_grant at the token endpoint.
var (
	errCodeInvalid = errors.New("the authorization code is unknown, expired, or was issued to another client or redirect URI")
	errCodeReused  = errors.New("the authorization code was already used; the refresh token issued for it is revoked")
	errCodePKCE    = errors.New("code_verifier does not match the code_challenge of the authorization request")
)

// redeemedCode is a spent code with its user and their memberships, read in the same statement.
type redeemedCode struct {
	authorizationCode
	User        user
	UserFound   bool
	Memberships []membership
}

// redeemCode spends a code of client clientUID once and reads its user and their memberships, in
// one statement on the way that matters. check then validates the code's binding (redirect URI,
// PKCE); a code it refuses is spent all the same, so it cannot be tried again. A code presented a
// second time revokes the session its first exchange started. Another client's code is not
// spent: that client may be the legitimate one.
func (s *Store) redeemCode(ctx context.Context, code, clientUID string, check func(authorizationCode) error) (redeemedCode, error) {
	var c redeemedCode
	// The statement commits without waiting for the WAL flush (asynchronousCommit): the flush
	// was most of an exchange's cost.
	rows, err := s.pool.Query(ctx, `
		WITH commit AS (`+asynchronousCommit+`),
		code AS (
			UPDATE tenancy.oauth_codes SET used_at = now()
			WHERE code_hash = $1 AND client_uid = $2 AND used_at IS NULL AND now() < expires_at
			RETURNING client_uid, user_id, organization_id, redirect_uri, code_challenge, scopes, nonce, auth_time, mfa)
		SELECT code.client_uid, code.user_id, code.organization_id, code.redirect_uri, code.code_challenge, code.scopes, code.nonce,
		       code.auth_time, code.mfa, `+userWithMembershipsColumns+`
		FROM commit, code JOIN tenancy.users u ON u.id = code.user_id `+userWithMembershipsJoins+`
		ORDER BY o.name, p.name NULLS FIRST`, hashOf(code), clientUID)
	if err != nil {
		return c, err
	}
	a := &c.authorizationCode
	c.User, c.Memberships, c.UserFound, err = collectUserWithMemberships(rows,
		&a.ClientUID, &a.UserID, &a.OrgID, &a.RedirectURI, &a.CodeChallenge, &a.Scopes, &a.Nonce, &a.AuthTime, &a.MFA)
	switch {
	case err != nil:
		return c, err
	case !c.UserFound:
		c.UserID, err = s.refuseCode(ctx, code, clientUID)
		return c, err
	}
	return c, check(c.authorizationCode)
}

// refuseCode tells why a code of the client was not redeemed: a reused one revokes the session
// its first exchange started; an expired one is spent. It returns the code's user, if any.
func (s *Store) refuseCode(ctx context.Context, code, clientUID string) (string, error) {
	var family *string
	var userID string
	var reused bool
	err := s.pool.QueryRow(ctx, `
		WITH before AS (SELECT used_at FROM tenancy.oauth_codes WHERE code_hash = $1 AND client_uid = $2 FOR UPDATE)
		UPDATE tenancy.oauth_codes c SET used_at = coalesce(c.used_at, now()) FROM before
		WHERE c.code_hash = $1
		RETURNING before.used_at IS NOT NULL, c.family_id, c.user_id`, hashOf(code), clientUID).Scan(&reused, &family, &userID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", errCodeInvalid
	case err != nil:
		return "", err
	case !reused:
		return userID, errCodeInvalid // expired
	}
	if family != nil {
		if _, err := s.pool.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL`, *family); err != nil {
			return userID, err
		}
	}
	return userID, errCodeReused
}

// codeStartedSession records the session a code's exchange started, for the revocation a reuse
// of the code triggers.
func (s *Store) codeStartedSession(ctx context.Context, code, familyID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE tenancy.oauth_codes SET family_id = $2 WHERE code_hash = $1`, hashOf(code), familyID)
	return err
}

// endClientSession revokes the session family of the user with the client (an ID token's sid).
func (s *Store) endClientSession(ctx context.Context, familyID, userID, clientUID string) error {
	if !uuidPattern.MatchString(familyID) {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE tenancy.refresh_tokens SET revoked_at = now()
		WHERE family_id = $1 AND user_id = $2 AND client_uid = $3 AND revoked_at IS NULL`, familyID, userID, clientUID)
	return err
}

// organizationOwners are the enabled Owners (organization-wide, Active) of an organization.
func (s *Store) organizationOwners(ctx context.Context, orgID string) ([]user, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT u.id, u.email::text, u.display_name FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
		WHERE m.organization_id = $1 AND m.project_id IS NULL AND m.state = 'Active' AND m.role = 'Owner' AND NOT u.disabled`, orgID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (user, error) {
		var u user
		return u, row.Scan(&u.ID, &u.Email, &u.DisplayName)
	})
}

// projectOf finds a project of an organization by name or id.
func (s *Store) projectOf(ctx context.Context, orgID, nameOrID string) (string, bool, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id FROM tenancy.projects WHERE organization_id = $1 AND (name = $2 OR id::text = $2)`, orgID, nameOrID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}
