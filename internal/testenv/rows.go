package testenv

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Typed reads of the operator's rows, so that a spec compares a row's fields (and a failure names
// the field that differs) instead of counting the rows that match a long predicate. Each Read
// function takes a WHERE clause over the table's alias (written next to each) and fails unless
// exactly one row matches; ReadAPIKeys reads any number.

// Querier is what the reads query: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// OrganizationRow is a row of tenancy.organizations (alias o).
type OrganizationRow struct {
	ID          string `db:"id"`
	UID         string `db:"uid"`
	Name        string `db:"name"`
	DisplayName string `db:"display_name"`
	Tier        string `db:"tier"`
	Namespace   string `db:"namespace"`
}

// ReadOrganization reads the one organization where says (over o).
func ReadOrganization(ctx context.Context, q Querier, where string, args ...any) (OrganizationRow, error) {
	return readOne[OrganizationRow](ctx, q, `SELECT o.id::text AS id, o.uid::text AS uid, o.name, o.display_name, o.tier, o.namespace
		FROM tenancy.organizations o WHERE `+where, args...)
}

// ProjectRow is a row of tenancy.projects (alias p).
type ProjectRow struct {
	ID             string `db:"id"`
	UID            string `db:"uid"`
	OrganizationID string `db:"organization_id"`
	Name           string `db:"name"`
	DisplayName    string `db:"display_name"`
}

// ReadProject reads the one project where says (over p).
func ReadProject(ctx context.Context, q Querier, where string, args ...any) (ProjectRow, error) {
	return readOne[ProjectRow](ctx, q, `SELECT p.id::text AS id, p.uid::text AS uid, p.organization_id::text AS organization_id, p.name, p.display_name
		FROM tenancy.projects p WHERE `+where, args...)
}

// UserRow is a row of tenancy.users (alias u).
type UserRow struct {
	ID          string `db:"id"`
	Email       string `db:"email"`
	HasPassword bool   `db:"has_password"`
	Disabled    bool   `db:"disabled"`
}

// ReadUser reads the one user where says (over u).
func ReadUser(ctx context.Context, q Querier, where string, args ...any) (UserRow, error) {
	return readOne[UserRow](ctx, q, `SELECT u.id::text AS id, u.email::text AS email, u.password_hash IS NOT NULL AS has_password, u.disabled
		FROM tenancy.users u WHERE `+where, args...)
}

// MembershipRow is a row of tenancy.memberships (alias m) with its user's email (u) and its
// project's name (p; nil for an organization-wide membership).
type MembershipRow struct {
	ID             string  `db:"id"`
	UID            string  `db:"uid"`
	OrganizationID string  `db:"organization_id"`
	ProjectID      *string `db:"project_id"`
	ProjectName    *string `db:"project_name"`
	UserID         string  `db:"user_id"`
	Email          string  `db:"email"`
	Role           string  `db:"role"`
	State          string  `db:"state"`
}

// ReadMembership reads the one membership where says (over m, u and p).
func ReadMembership(ctx context.Context, q Querier, where string, args ...any) (MembershipRow, error) {
	return readOne[MembershipRow](ctx, q, `SELECT m.id::text AS id, m.uid::text AS uid, m.organization_id::text AS organization_id,
			m.project_id::text AS project_id, p.name AS project_name, m.user_id::text AS user_id, u.email::text AS email,
			m.role::text AS role, m.state::text AS state
		FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id LEFT JOIN tenancy.projects p ON p.id = m.project_id
		WHERE `+where, args...)
}

// APIKeyRow is a row of tenancy.api_keys (alias k): one issued key.
type APIKeyRow struct {
	ID             string     `db:"id"`
	UID            string     `db:"uid"`
	Name           string     `db:"name"`
	OrganizationID *string    `db:"organization_id"`
	ProjectID      *string    `db:"project_id"`
	KeyID          string     `db:"key_id"`
	Hash           []byte     `db:"hash"`
	Role           string     `db:"role"`
	Rotation       string     `db:"rotation"`
	ExpiresAt      *time.Time `db:"expires_at"`
	SupersededAt   *time.Time `db:"superseded_at"`
	RevokedAt      *time.Time `db:"revoked_at"`
}

const apiKeyQuery = `SELECT k.id::text AS id, k.uid::text AS uid, k.name, k.organization_id::text AS organization_id,
		k.project_id::text AS project_id, k.key_id, k.hash, k.role::text AS role, k.rotation, k.expires_at, k.superseded_at, k.revoked_at
	FROM tenancy.api_keys k WHERE `

// ReadAPIKey reads the one API key row where says (over k).
func ReadAPIKey(ctx context.Context, q Querier, where string, args ...any) (APIKeyRow, error) {
	return readOne[APIKeyRow](ctx, q, apiKeyQuery+where, args...)
}

// ReadAPIKeys reads every API key row where says (over k), oldest id first.
func ReadAPIKeys(ctx context.Context, q Querier, where string, args ...any) ([]APIKeyRow, error) {
	rows, err := q.Query(ctx, apiKeyQuery+where+" ORDER BY k.id", args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[APIKeyRow])
}

// InvitationRow is a row of tenancy.invitations (alias i), with its membership's uid (m).
type InvitationRow struct {
	ID            string     `db:"id"`
	MembershipID  string     `db:"membership_id"`
	MembershipUID string     `db:"membership_uid"`
	Hash          []byte     `db:"hash"`
	ExpiresAt     time.Time  `db:"expires_at"`
	UsedAt        *time.Time `db:"used_at"`
}

// ReadInvitation reads the one invitation where says (over i and m).
func ReadInvitation(ctx context.Context, q Querier, where string, args ...any) (InvitationRow, error) {
	return readOne[InvitationRow](ctx, q, `SELECT i.id::text AS id, i.membership_id::text AS membership_id, m.uid::text AS membership_uid,
			i.hash, i.expires_at, i.used_at
		FROM tenancy.invitations i JOIN tenancy.memberships m ON m.id = i.membership_id WHERE `+where, args...)
}

// readOne reads the one row of query into a T, by column name; none or more than one is an error.
func readOne[T any](ctx context.Context, q Querier, query string, args ...any) (T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[T])
}
