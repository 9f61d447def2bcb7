package authd

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
)

// The export: everything authd's database holds about a person, as JSON (GET /api/v1/me/export).
// Secrets are left out (password hash, TOTP secret, token hashes): they describe how to
// impersonate the person, not the person.

type accountExport struct {
	ExportedAt  time.Time          `json:"exported_at"`
	Account     exportedAccount    `json:"account"`
	Memberships []exportedMember   `json:"memberships"`
	Sessions    []exportedSession  `json:"sessions"`
	Mail        []exportedMail     `json:"mail"`
	Links       []exportedLink     `json:"emailed_links"`
	Apps        []exportedConsent  `json:"applications"`
	Audit       []exportedAuditRow `json:"audit"`
}

type exportedAccount struct {
	ID                string     `json:"id"`
	Email             string     `json:"email"`
	DisplayName       string     `json:"display_name"`
	EmailVerifiedAt   *time.Time `json:"email_verified_at"`
	HasPassword       bool       `json:"has_password"`
	PasswordChangedAt *time.Time `json:"password_changed_at"`
	Disabled          bool       `json:"disabled"`
	MFAEnabledAt      *time.Time `json:"mfa_enabled_at"`
	RecoveryCodesLeft int        `json:"recovery_codes_left"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

type exportedMember struct {
	Organization string    `json:"organization"`
	Project      *string   `json:"project"`
	Role         string    `json:"role"`
	State        string    `json:"state"`
	CreatedAt    time.Time `json:"created_at"`
}

type exportedSession struct {
	ID            string     `json:"id"`
	Organization  *string    `json:"organization"`
	Browser       bool       `json:"browser"`
	SecondFactor  bool       `json:"second_factor"`
	StartedAt     time.Time  `json:"started_at"`
	LastUsedAt    time.Time  `json:"last_used_at"`
	EndedAt       *time.Time `json:"ended_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
	UserAgent     string     `json:"user_agent"`
	ClientAddress string     `json:"client_address"`
}

type exportedMail struct {
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
	GivenUpAt *time.Time `json:"given_up_at"`
}

type exportedLink struct {
	Purpose   string     `json:"purpose"`
	SentTo    string     `json:"sent_to"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at"`
}

// exportedConsent is an application (OAuthClient) the person allowed.
type exportedConsent struct {
	ClientID     string    `json:"client_id"`
	Name         string    `json:"name"`
	Organization string    `json:"organization"`
	Scopes       []string  `json:"scopes"`
	GrantedAt    time.Time `json:"granted_at"`
}

type exportedAuditRow struct {
	At           time.Time       `json:"at"`
	Actor        string          `json:"actor"`
	Action       string          `json:"action"`
	Target       string          `json:"target"`
	Organization *string         `json:"organization"`
	Details      json.RawMessage `json:"details"`
}

// export reads what the database holds about u, in one repeatable-read snapshot.
func (s *Store) export(ctx context.Context, u user) (accountExport, error) {
	e := accountExport{ExportedAt: time.Now().UTC()}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		a := &e.Account
		if err := tx.QueryRow(ctx, `
			SELECT u.id, u.email::text, u.display_name, u.email_verified_at, u.password_hash IS NOT NULL, u.password_changed_at, u.disabled,
			       f.confirmed_at, (SELECT count(*) FROM tenancy.recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL),
			       u.created_at, u.updated_at
			FROM tenancy.users u LEFT JOIN tenancy.totp_factors f ON f.user_id = u.id
			WHERE u.id = $1`, u.ID).
			Scan(&a.ID, &a.Email, &a.DisplayName, &a.EmailVerifiedAt, &a.HasPassword, &a.PasswordChangedAt, &a.Disabled,
				&a.MFAEnabledAt, &a.RecoveryCodesLeft, &a.CreatedAt, &a.UpdatedAt); err != nil {
			return err
		}
		var err error
		if e.Memberships, err = collect(ctx, tx, `
			SELECT o.name, p.name, m.role::text, m.state::text, m.created_at
			FROM tenancy.memberships m JOIN tenancy.organizations o ON o.id = m.organization_id
			LEFT JOIN tenancy.projects p ON p.id = m.project_id
			WHERE m.user_id = $1 ORDER BY o.name, p.name NULLS FIRST`, []any{u.ID},
			func(row pgx.CollectableRow, m *exportedMember) error {
				return row.Scan(&m.Organization, &m.Project, &m.Role, &m.State, &m.CreatedAt)
			}); err != nil {
			return err
		}
		if e.Sessions, err = collect(ctx, tx, `
			SELECT family_id::text, (array_agg(o.name ORDER BY t.created_at DESC))[1], bool_or(t.web), bool_or(t.mfa),
			       min(t.created_at), max(t.created_at), max(t.revoked_at), max(t.family_expires_at),
			       (array_agg(t.user_agent ORDER BY t.created_at DESC))[1], (array_agg(t.client_address ORDER BY t.created_at DESC))[1]
			FROM tenancy.refresh_tokens t LEFT JOIN tenancy.organizations o ON o.id = t.organization_id
			WHERE t.user_id = $1 GROUP BY family_id ORDER BY min(t.created_at)`, []any{u.ID},
			func(row pgx.CollectableRow, s *exportedSession) error {
				return row.Scan(&s.ID, &s.Organization, &s.Browser, &s.SecondFactor, &s.StartedAt, &s.LastUsedAt, &s.EndedAt, &s.ExpiresAt,
					&s.UserAgent, &s.ClientAddress)
			}); err != nil {
			return err
		}
		if e.Mail, err = collect(ctx, tx, `
			SELECT kind, subject, created_at, sent_at, dead_at FROM tenancy.mail_outbox WHERE recipient = $1 ORDER BY id`, []any{u.Email},
			func(row pgx.CollectableRow, m *exportedMail) error {
				return row.Scan(&m.Kind, &m.Subject, &m.CreatedAt, &m.SentAt, &m.GivenUpAt)
			}); err != nil {
			return err
		}
		if e.Links, err = collect(ctx, tx, `
			SELECT purpose, email::text, created_at, expires_at, used_at FROM tenancy.email_tokens WHERE user_id = $1 ORDER BY created_at`, []any{u.ID},
			func(row pgx.CollectableRow, l *exportedLink) error {
				return row.Scan(&l.Purpose, &l.SentTo, &l.CreatedAt, &l.ExpiresAt, &l.UsedAt)
			}); err != nil {
			return err
		}
		if e.Apps, err = collect(ctx, tx, `
			SELECT c.client_id, c.display_name, o.name, k.scopes, k.granted_at
			FROM tenancy.oauth_consents k JOIN tenancy.oauth_clients c ON c.uid = k.client_uid
			JOIN tenancy.organizations o ON o.id = k.organization_id
			WHERE k.user_id = $1 ORDER BY k.granted_at`, []any{u.ID},
			func(row pgx.CollectableRow, a *exportedConsent) error {
				return row.Scan(&a.ClientID, &a.Name, &a.Organization, &a.Scopes, &a.GrantedAt)
			}); err != nil {
			return err
		}
		e.Audit, err = collect(ctx, tx, `
			SELECT a.at, a.actor, a.action, a.target, o.name, a.details
			FROM tenancy.audit_log a LEFT JOIN tenancy.organizations o ON o.id = a.organization_id
			WHERE a.actor_user_id = $1 OR a.target = 'user/' || $2::text
			ORDER BY a.id`, []any{u.ID, u.Email},
			func(row pgx.CollectableRow, a *exportedAuditRow) error {
				return row.Scan(&a.At, &a.Actor, &a.Action, &a.Target, &a.Organization, &a.Details)
			})
		return err
	})
	return e, err
}

// collect reads the rows of sql into a slice, never nil (an empty list exports as []).
func collect[T any](ctx context.Context, tx pgx.Tx, sql string, args []any, scan func(pgx.CollectableRow, *T) error) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var item T
		return item, scan(row, &item)
	})
	if items == nil {
		items = []T{}
	}
	return items, err
}

// exportOwnAccount answers the caller's export as a JSON attachment, and audits it.
func (s *Server) exportOwnAccount(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	e, err := s.store.export(ctx, u)
	if err != nil {
		return err
	}
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "user.exported", Target: "user/" + u.Email})
	w.Header().Set("Content-Disposition", `attachment; filename="tenancy-account-export.json"`)
	writeJSON(w, http.StatusOK, e)
	return nil
}

// exportPage is the account page's download of the same export.
func (s *Server) exportPage(w http.ResponseWriter, r *http.Request, ws webSession) {
	if err := s.exportOwnAccount(r.Context(), w, r, ws.User, ws.FamilyID); err != nil {
		s.renderAccount(w, r, ws, http.StatusInternalServerError, err)
	}
}
