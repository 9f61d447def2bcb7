package authd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/tctx"
)

// Store is authd's access to the database. Every connection runs as the role tenancy_authd (SET
// ROLE after connecting), so authd holds exactly that role's grants whatever login it uses.
type Store struct {
	pool *pgxpool.Pool
}

// OpenStore prepares a pool for databaseURL whose sessions act as role.
func OpenStore(ctx context.Context, databaseURL, role string) (*Store, error) {
	cfg, err := db.PoolConfig(databaseURL, "tenancy-authd", 3*time.Second)
	if err != nil {
		return nil, err
	}
	// pgx's default of max(4, cores) connections would cap throughput; pool_max_conns in the URL
	// still wins.
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = 32
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the database pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// user is a row of tenancy.users.
type user struct {
	ID           string
	Email        string
	DisplayName  string
	PasswordHash *string
	Disabled     bool
	// EmailVerified: the email was proven to belong to the account's holder.
	EmailVerified bool
}

func (s *Store) userByEmail(ctx context.Context, email string) (user, bool, error) {
	var u user
	err := s.pool.QueryRow(ctx, `SELECT id, email::text, display_name, password_hash, disabled, email_verified_at IS NOT NULL FROM tenancy.users WHERE email = $1`, email).
		Scan(&u.ID, &u.Email, &u.DisplayName, &u.PasswordHash, &u.Disabled, &u.EmailVerified)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, false, nil
	}
	return u, err == nil, err
}

// querier is the pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) userByID(ctx context.Context, id string) (user, bool, error) {
	return userByID(ctx, s.pool, id)
}

func userByID(ctx context.Context, q querier, id string) (user, bool, error) {
	var u user
	err := q.QueryRow(ctx, `SELECT id, email::text, display_name, password_hash, disabled, email_verified_at IS NOT NULL FROM tenancy.users WHERE id = $1`, id).
		Scan(&u.ID, &u.Email, &u.DisplayName, &u.PasswordHash, &u.Disabled, &u.EmailVerified)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, false, nil
	}
	return u, err == nil, err
}

// rehashPassword replaces the hash a sign-in just checked with one of the same password under
// the current parameters (argon2id, for an outdated or imported bcrypt hash). The password did
// not change, so password_changed_at stays; a hash changed meanwhile (a reset) is left alone.
func (s *Store) rehashPassword(ctx context.Context, userID, checked, rehashed string) error {
	_, err := s.pool.Exec(ctx, `UPDATE tenancy.users SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2`,
		userID, checked, rehashed)
	return err
}

func setPassword(ctx context.Context, q mail.Execer, userID, hash string) error {
	_, err := q.Exec(ctx, `UPDATE tenancy.users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE id = $1`, userID, hash)
	return err
}

// membership is one of a user's memberships, with its organization and project.
type membership struct {
	OrgID       string  `json:"organization_id"`
	OrgName     string  `json:"organization"`
	ProjectID   *string `json:"project_id,omitempty"`
	ProjectName *string `json:"project,omitempty"`
	Role        string  `json:"role"`
	State       string  `json:"state"`
	namespace   string
	uid         string // the Membership's metadata.uid
	requireMFA  bool   // the organization's spec.requireMFA
}

func (s *Store) memberships(ctx context.Context, userID string) ([]membership, error) {
	return memberships(ctx, s.pool, userID)
}

func memberships(ctx context.Context, q querier, userID string) ([]membership, error) {
	rows, err := q.Query(ctx, `
		SELECT o.id, o.name, o.namespace, p.id, p.name, m.role::text, m.state::text, m.uid::text, o.require_mfa
		FROM tenancy.memberships m
		JOIN tenancy.organizations o ON o.id = m.organization_id
		LEFT JOIN tenancy.projects p ON p.id = m.project_id
		WHERE m.user_id = $1
		ORDER BY o.name, p.name NULLS FIRST`, userID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (membership, error) {
		var m membership
		err := row.Scan(&m.OrgID, &m.OrgName, &m.namespace, &m.ProjectID, &m.ProjectName, &m.Role, &m.State, &m.uid, &m.requireMFA)
		return m, err
	})
}

// userWithMembershipsColumns and userWithMembershipsJoins read a user (u) and their memberships,
// one row each (or one row with NULL membership columns), for collectUserWithMemberships.
const (
	userWithMembershipsColumns = `u.id, u.email::text, u.display_name, u.password_hash, u.disabled, u.email_verified_at IS NOT NULL,
		o.id, o.name, o.namespace, p.id, p.name, m.role::text, m.state::text, m.uid::text, o.require_mfa`
	userWithMembershipsJoins = `LEFT JOIN tenancy.memberships m ON m.user_id = u.id
		LEFT JOIN tenancy.organizations o ON o.id = m.organization_id
		LEFT JOIN tenancy.projects p ON p.id = m.project_id`
)

// userWithMemberships reads a user and their memberships in one query (userByID and memberships
// together), for the token endpoint's hot path.
func userWithMemberships(ctx context.Context, q querier, userID string) (user, []membership, bool, error) {
	rows, err := q.Query(ctx, `SELECT `+userWithMembershipsColumns+` FROM tenancy.users u `+userWithMembershipsJoins+`
		WHERE u.id = $1 ORDER BY o.name, p.name NULLS FIRST`, userID)
	if err != nil {
		return user{}, nil, false, err
	}
	return collectUserWithMemberships(rows)
}

// collectUserWithMemberships reads rows whose last columns are userWithMembershipsColumns; before
// them, each row holds the same values, scanned into first.
func collectUserWithMemberships(rows pgx.Rows, first ...any) (user, []membership, bool, error) {
	defer rows.Close()
	var u user
	var all []membership
	found := false
	for rows.Next() {
		var m membership
		var orgID, orgName, namespace, role, state, uid *string
		var requireMFA *bool
		dest := append(slices.Clone(first), &u.ID, &u.Email, &u.DisplayName, &u.PasswordHash, &u.Disabled, &u.EmailVerified,
			&orgID, &orgName, &namespace, &m.ProjectID, &m.ProjectName, &role, &state, &uid, &requireMFA)
		if err := rows.Scan(dest...); err != nil {
			return user{}, nil, false, err
		}
		found = true
		if orgID == nil { // no membership at all
			continue
		}
		m.OrgID, m.OrgName, m.namespace, m.Role, m.State, m.uid, m.requireMFA = *orgID, *orgName, *namespace, *role, *state, *uid, *requireMFA
		all = append(all, m)
	}
	return u, all, found, rows.Err()
}

// apiKey is a valid key found by its hash.
type apiKey struct {
	ID        string
	KeyID     string
	OrgID     string
	OrgName   string
	ProjectID *string
	Role      string
	ExpiresAt *time.Time
}

// apiKeyByHash finds a key that still works: not revoked, not expired, in an organization that
// still exists. Superseded keys work until their grace period ends (their expires_at). imported
// says which kind is presented: a Tenancy key never matches an imported row, nor the reverse.
func (s *Store) apiKeyByHash(ctx context.Context, hash []byte, imported bool) (apiKey, bool, error) {
	var k apiKey
	err := s.pool.QueryRow(ctx, `
		SELECT k.id, k.key_id, o.id, o.name, k.project_id, k.role::text, k.expires_at
		FROM tenancy.api_keys k JOIN tenancy.organizations o ON o.id = k.organization_id
		WHERE k.hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
		  AND (k.imported_at IS NOT NULL) = $2`, hash, imported).
		Scan(&k.ID, &k.KeyID, &k.OrgID, &k.OrgName, &k.ProjectID, &k.Role, &k.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return k, false, nil
	}
	return k, err == nil, err
}

// apiKeyLive reports whether the key with public id keyID still works.
func (s *Store) apiKeyLive(ctx context.Context, keyID string) (bool, error) {
	var live bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM tenancy.api_keys WHERE key_id = $1 AND organization_id IS NOT NULL
		               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))`, keyID).Scan(&live)
	return live, err
}

// userHoldsRole reports whether the user is enabled and an Active membership in the organization
// gives them at least role there (in project, when not ""): an organization-wide one, or one of
// that project.
func (s *Store) userHoldsRole(ctx context.Context, userID, orgID, projectID, role string) (bool, error) {
	var holds bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
		               WHERE m.user_id = $1 AND m.organization_id = $2 AND m.state = 'Active' AND NOT u.disabled
		                 AND (m.project_id IS NULL OR m.project_id = $3::uuid) AND m.role >= $4::tenancy.role)`,
		userID, orgID, nullIfEmpty(projectID), role).Scan(&holds)
	return holds, err
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// hasSession reports whether the user ever started a session.
func (s *Store) hasSession(ctx context.Context, userID string) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenancy.refresh_tokens WHERE user_id = $1)`, userID).Scan(&found)
	return found, err
}

// familiarAddress reports whether the account of email started a session from address within
// the last period.
func (s *Store) familiarAddress(ctx context.Context, email, address string, period time.Duration) (bool, error) {
	var familiar bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM tenancy.refresh_tokens t JOIN tenancy.users u ON u.id = t.user_id
		               WHERE u.email = $1 AND t.client_address = $2 AND t.created_at > now() - make_interval(secs => $3))`,
		email, address, period.Seconds()).Scan(&familiar)
	return familiar, err
}

// touchAPIKeys records when keys were last used, in one statement for many.
func (s *Store) touchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	at := make([]time.Time, 0, len(used))
	for id, t := range used {
		ids, at = append(ids, id), append(at, t)
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE tenancy.api_keys k SET last_used_at = u.at
		FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, at)
	return err
}

// contextKey reads the context key kid, which signs the request contexts of tokens signed by the
// signing key of the same id.
func (s *Store) contextKey(ctx context.Context, kid string) (tctx.Key, error) {
	k := tctx.Key{ID: kid}
	err := s.pool.QueryRow(ctx, `SELECT secret FROM tenancy.context_keys WHERE kid = $1 AND (expires_at IS NULL OR expires_at > now())`, kid).Scan(&k.Secret)
	if errors.Is(err, pgx.ErrNoRows) {
		return k, fmt.Errorf("%w: no context key %s (the manager creates it with the signing key)", errNoSigningKey, kid)
	}
	return k, err
}

// newOpaqueToken returns a random token of 256 bits with a prefix, and the SHA-256 stored for it.
func newOpaqueToken(prefix string) (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashOf(token), nil
}

func hashOf(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
