package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tctx"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// TestNotesIsolation runs the example against a migrated database with the sample TenantTable's
// policies on public.notes, connected as a login that is only a member of tenancy_app, and sends
// it real HTTP requests with tokens signed and published (JWKS over HTTP) as authd does.
func TestNotesIsolation(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	database, pg := testenv.NewMigratedDatabase(t, "notes")
	acme, globex := organization(ctx, t, pg, "acme"), organization(ctx, t, pg, "globex")
	alice := member(ctx, t, pg, acme, "alice@acme.test", "Admin")
	carol := member(ctx, t, pg, acme, "carol@acme.test", "Member")
	bob := member(ctx, t, pg, globex, "bob@globex.test", "Admin")

	// The application table as `make dev` creates it, under the policies of config/samples' TenantTable.
	if _, err := pg.Pool().Exec(ctx, `
		CREATE TABLE public.notes (id bigserial PRIMARY KEY, org_id uuid NOT NULL, body text NOT NULL);
		CREATE INDEX notes_org_id_idx ON public.notes (org_id);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO tenancy_app;
		GRANT USAGE ON SEQUENCE public.notes_id_seq TO tenancy_app`); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.EnsurePolicies(ctx, db.TenantTable{
		Name: "notes", Schema: "public", Table: "notes", OrganizationColumn: "org_id",
		Access: map[string]string{"SELECT": "Viewer", "INSERT": "Member", "UPDATE": "Member", "DELETE": "Admin"},
	}); err != nil {
		t.Fatal(err)
	}

	pool, err := pgxpool.New(ctx, applicationLogin(ctx, t, pg, database.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	auth := newIssuer(ctx, t, pg)
	verifier := tenancy.NewVerifier(auth.url, "tenancy", tenancy.NewJWKSCache(auth.url+"/.well-known/jwks.json"))
	app := httptest.NewServer(newHandler(verifier, pool))
	t.Cleanup(app.Close)
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, app.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		return resp.StatusCode, string(answer)
	}
	list := func(token string) []Note {
		t.Helper()
		status, body := call(http.MethodGet, "/notes", token, "")
		if status != http.StatusOK {
			t.Fatalf("GET /notes: %d %s", status, body)
		}
		var notes []Note
		if err := json.Unmarshal([]byte(body), &notes); err != nil {
			t.Fatal(err)
		}
		return notes
	}
	create := func(token, text string) Note {
		t.Helper()
		status, body := call(http.MethodPost, "/notes", token, `{"body":"`+text+`"}`)
		if status != http.StatusCreated {
			t.Fatalf("POST /notes %q: %d %s", text, status, body)
		}
		var note Note
		if err := json.Unmarshal([]byte(body), &note); err != nil {
			t.Fatal(err)
		}
		return note
	}

	aliceToken, bobToken := auth.token(t, alice, acme, "Admin"), auth.token(t, bob, globex, "Admin")
	if status, body := call(http.MethodGet, "/notes", "", ""); status != http.StatusUnauthorized {
		t.Fatalf("GET /notes without a token: %d %s, want 401", status, body)
	}
	roadmap := create(aliceToken, "acme roadmap")
	payroll := create(bobToken, "globex payroll")

	// Each organization sees its own notes only, though the query has no WHERE.
	if diff := cmp.Diff([]Note{roadmap}, list(aliceToken)); diff != "" {
		t.Errorf("alice (acme) sees (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Note{payroll}, list(bobToken)); diff != "" {
		t.Errorf("bob (globex) sees (-want +got):\n%s", diff)
	}
	// Another organization's note is not found, not forbidden, and stays.
	if status, body := call(http.MethodDelete, "/notes/"+itoa(roadmap.ID), bobToken, ""); status != http.StatusNotFound {
		t.Errorf("bob deleting acme's note: %d %s, want 404", status, body)
	}
	if diff := cmp.Diff([]Note{roadmap}, list(aliceToken)); diff != "" {
		t.Errorf("after bob's attempt, alice sees (-want +got):\n%s", diff)
	}

	// The token's scope guards the route: a Member has no data:delete.
	carolToken := auth.token(t, carol, acme, "Member")
	if status, body := call(http.MethodDelete, "/notes/"+itoa(roadmap.ID), carolToken, ""); status != http.StatusForbidden ||
		!strings.Contains(body, "data:delete") {
		t.Errorf("carol (Member) deleting: %d %s, want 403 naming data:delete", status, body)
	}
	// The database checks the live role: demoted to Viewer, carol's still valid Member token
	// passes the guard, and the insert policy refuses.
	if _, err := pg.Pool().Exec(ctx, "UPDATE tenancy.memberships SET role = 'Viewer' WHERE user_id = $1", carol); err != nil {
		t.Fatal(err)
	}
	if status, body := call(http.MethodPost, "/notes", carolToken, `{"body":"after demotion"}`); status != http.StatusForbidden {
		t.Errorf("carol writing after her demotion: %d %s, want 403 from the database", status, body)
	}
	if diff := cmp.Diff([]Note{roadmap}, list(carolToken)); diff != "" {
		t.Errorf("carol (now Viewer) still reads acme's notes (-want +got):\n%s", diff)
	}

	// A request context the database cannot verify shows nothing and writes nothing, even in a
	// validly signed token.
	forged := auth.tokenWithContext(t, alice, acme, "Admin", tctx.Key{ID: auth.kid, Secret: []byte("not the context key")})
	if got := list(forged); len(got) != 0 {
		t.Errorf("a forged request context sees %v, want nothing", got)
	}
	if status, body := call(http.MethodPost, "/notes", forged, `{"body":"smuggled"}`); status != http.StatusForbidden {
		t.Errorf("a forged request context writing: %d %s, want 403", status, body)
	}

	// Alice, an Admin, deletes her organization's note; each creation was audited as its principal.
	if status, body := call(http.MethodDelete, "/notes/"+itoa(roadmap.ID), aliceToken, ""); status != http.StatusNoContent {
		t.Errorf("alice deleting acme's note: %d %s, want 204", status, body)
	}
	rows, err := pg.Pool().Query(ctx, `SELECT action, actor_user_id::text, organization_id::text FROM tenancy.audit_log
	                                    WHERE action LIKE 'note.%' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	audited, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]string, error) {
		var a [3]string
		return a, r.Scan(&a[0], &a[1], &a[2])
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][3]string{{"note.created", alice, acme}, {"note.created", bob, globex}, {"note.deleted", alice, acme}}
	if diff := cmp.Diff(want, audited); diff != "" {
		t.Errorf("audit rows (-want +got):\n%s", diff)
	}
}

// organization makes an organization row as the Organization controller would, and returns its id.
func organization(ctx context.Context, t *testing.T, pg *db.Postgres, name string) string {
	t.Helper()
	org, err := pg.UpsertOrganization(ctx, db.Organization{UID: uuid.NewString(), Name: name, Tier: "Free", Namespace: name}, db.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return org.ID
}

// member makes a user with an Active organization-wide membership, and returns the user's id.
func member(ctx context.Context, t *testing.T, pg *db.Postgres, org, email, role string) string {
	t.Helper()
	var id string
	if err := pg.Pool().QueryRow(ctx, `
		WITH u AS (INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id)
		INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
		SELECT gen_random_uuid(), $2, id, $3, 'Active' FROM u RETURNING user_id`, email, org, role).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// applicationLogin creates a login role that is a member of tenancy_app and nothing else, as an
// application's would be, and returns databaseURL rewritten to log in with it.
func applicationLogin(ctx context.Context, t *testing.T, pg *db.Postgres, databaseURL string) string {
	t.Helper()
	role, password := "notes_app_"+randomHex(t, 4), randomHex(t, 16)
	if _, err := pg.Pool().Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+
		" LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE tenancy_app PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	// Roles are server-wide: drop it once the pools are closed (cleanups run last-in first-out).
	serverURL, err := testenv.ServerURL()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), serverURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// issuer does authd's part: an Ed25519 signing key published in a JWKS over HTTP, and the
// context key of the same id in tenancy.context_keys, which signs the tokens' tctx.
type issuer struct {
	url        string
	kid        string
	key        signing.Key
	contextKey tctx.Key
}

func newIssuer(ctx context.Context, t *testing.T, pg *db.Postgres) *issuer {
	t.Helper()
	now := time.Now()
	key, err := signing.NewKey(signing.EdDSA, now, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.SyncContextKeys(ctx, []db.ContextKey{{KID: key.KID}}, signing.MaxTokenLifetime); err != nil {
		t.Fatal(err)
	}
	i := &issuer{kid: key.KID, key: key, contextKey: tctx.Key{ID: key.KID}}
	if err := pg.Pool().QueryRow(ctx, "SELECT secret FROM tenancy.context_keys WHERE kid = $1", key.KID).Scan(&i.contextKey.Secret); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(signing.JWKS{Keys: []signing.JWK{signing.ToJWK(key.KID, key.Public())}})
	}))
	t.Cleanup(jwks.Close)
	i.url = jwks.URL
	return i
}

func (i *issuer) token(t *testing.T, userID, orgID, role string) string {
	return i.tokenWithContext(t, userID, orgID, role, i.contextKey)
}

// tokenWithContext signs an access token with the claims authd gives a person's session, its
// tctx signed with contextKey.
func (i *issuer) tokenWithContext(t *testing.T, userID, orgID, role string, contextKey tctx.Key) string {
	t.Helper()
	now := time.Now()
	exp := now.Add(15 * time.Minute)
	requestContext, err := tctx.Sign(contextKey, tctx.Context{UserID: userID, OrgID: orgID, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	claims := tenancy.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.url, Subject: userID, Audience: jwt.ClaimStrings{"tenancy"},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: randomHex(t, 16),
		},
		ClientID: tenancy.SessionClientID, Org: orgID, Role: role,
		Scope: strings.Join(tenancy.Permissions(role), " "), TCtx: requestContext,
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	token.Header["typ"] = tenancy.TokenType
	token.Header["kid"] = i.kid
	signed, err := token.SignedString(i.key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
