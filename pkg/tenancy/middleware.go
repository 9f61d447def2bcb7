package tenancy

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ProjectHeader lets a request narrow an organization-wide token to one of its projects: the
// database then shows only that project's rows (tenancy.project), never another's. A route
// pattern's {project} path value (net/http ServeMux) does the same.
const ProjectHeader = "X-Tenancy-Project"

// Principal is who a request comes from, as its verified token says.
type Principal struct {
	*Claims
	// Project is the project the request is narrowed to (the token's, or the X-Tenancy-Project
	// header's), "" for the whole organization.
	Project string
}

type principalKey struct{}

// FromContext returns the principal that Middleware put in ctx.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (for tests and for code that verifies tokens itself).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Middleware verifies the request's bearer token and puts its principal in the request's
// context; a request without a valid token gets 401 and never reaches next. Tokens without an
// organization (those only authd's /auth/me accepts) are refused too.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			unauthorized(w, "a bearer token is required")
			return
		}
		claims, err := v.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			unauthorized(w, "the access token is invalid or expired")
			return
		}
		if claims.Org == "" || claims.TCtx == "" {
			unauthorized(w, "the access token is for no organization: log in to one")
			return
		}
		p := &Principal{Claims: claims, Project: claims.Project}
		narrowed := r.Header.Get(ProjectHeader)
		if narrowed == "" {
			narrowed = r.PathValue("project")
		}
		if narrowed != "" {
			if !uuidPattern.MatchString(narrowed) || (claims.Project != "" && claims.Project != narrowed) {
				forbidden(w, ProjectHeader+" must be a project id the token may see")
				return
			}
			p.Project = narrowed
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// RequireRole lets through requests whose token has at least role min (403 otherwise). The
// token's role is as fresh as the token; tenancy.has_role in the database is the live check.
func RequireRole(min string) func(http.Handler) http.Handler {
	return require(func(p *Principal) bool { return p.HasRole(min) }, "requires the role "+min+" or above")
}

// RequirePermission lets through requests whose token's scope lists permission (403 otherwise).
func RequirePermission(permission string) func(http.Handler) http.Handler {
	return require(func(p *Principal) bool { return p.HasPermission(permission) }, "requires the permission "+permission)
}

func require(allowed func(*Principal) bool, why string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				unauthorized(w, "a bearer token is required")
				return
			}
			if !allowed(p) {
				forbidden(w, why)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func unauthorized(w http.ResponseWriter, description string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, "invalid_token", description)
}

func forbidden(w http.ResponseWriter, description string) {
	writeError(w, http.StatusForbidden, "insufficient_scope", description)
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// Beginner starts transactions: a *pgxpool.Pool, a *pgx.Conn.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// WithTenant runs fn in a transaction on db with the request context of the principal in ctx set
// as tenancy.context (and the narrowed project as tenancy.project), both local to the
// transaction, so that row-level security shows and accepts only the principal's rows. Connect
// as a member of tenancy_app. fn's error rolls the transaction back.
func WithTenant(ctx context.Context, db Beginner, fn func(pgx.Tx) error) error {
	p, ok := FromContext(ctx)
	if !ok {
		return ErrInvalidToken
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true), set_config('tenancy.project', $2, true)",
			p.TCtx, p.Project); err != nil {
			return err
		}
		return fn(tx)
	})
}

// Audit writes an action of the application to tenancy.audit_log as the principal of the
// transaction (call it inside WithTenant): the database records who, in which organization.
func Audit(ctx context.Context, tx pgx.Tx, action, target string, details map[string]any) error {
	p, ok := FromContext(ctx)
	if !ok {
		return ErrInvalidToken
	}
	if details == nil {
		details = map[string]any{}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenancy.audit_log (actor, actor_user_id, actor_api_key_id, action, target, organization_id, details)
		VALUES ($1, tenancy.current_user_id(), tenancy.current_api_key_id(), $2, $3, tenancy.current_org_id(), $4)`,
		p.Subject, action, target, details)
	return err
}
