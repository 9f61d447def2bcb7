package notespython

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tctx"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// Note is one note as the API shows it.
type Note struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

// TestPythonNotesIsolation runs notes.py with Debian's Python against a migrated database with
// the sample TenantTable's policies on public.notes, connected as a login that is only a member of
// tenancy_app, and sends it real HTTP requests with tokens signed as authd signs them and keys
// published as authd publishes them (a discovery document and a JWKS over HTTPS). It proves what
// examples/notes' TestNotesIsolation proves of the Go example, and that the Python verifier
// refuses what pkg/tenancy's refuses.
func TestPythonNotesIsolation(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL and Debian's Python")
	python := pythonInterpreter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	database, pg := testenv.NewMigratedDatabase(t, "notes_python")
	acme, globex := testenv.CreateOrganization(ctx, t, pg, "acme"), testenv.CreateOrganization(ctx, t, pg, "globex")
	alice := testenv.CreateMember(ctx, t, pg, acme, "alice@acme.test", "Admin")
	carol := testenv.CreateMember(ctx, t, pg, acme, "carol@acme.test", "Member")
	victor := testenv.CreateMember(ctx, t, pg, acme, "victor@acme.test", "Viewer")
	bob := testenv.CreateMember(ctx, t, pg, globex, "bob@globex.test", "Admin")
	acmeWeb, globexWeb := project(ctx, t, pg, acme, "web"), project(ctx, t, pg, globex, "web")

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

	// authd's part: two signing keys, one Ed25519 (EdDSA) and one P-256 (ES256), in a JWKS that an
	// OpenID discovery document names, both over HTTPS, and the context keys of the same ids in
	// tenancy.context_keys, which sign the tokens' tctx.
	auth := testenv.StartIssuer(ctx, t, pg, testenv.IssuerOptions{Algorithms: []string{signing.EdDSA, signing.ES256}, TLS: true})
	ed, ec := auth.Keys[0], auth.Keys[1]
	// The role is dropped once the app and the pools are gone: the app is started after this.
	app := startApp(t, python, testenv.CreateLogin(ctx, t, database.URL, "notes_py_", "tenancy_app"), auth)

	// request sends a request with the Authorization header authorization (none when empty) and
	// the extra headers, and returns the status, the JSON answer and the WWW-Authenticate header.
	request := func(method, path, authorization, body string, headers ...string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, app+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		return resp.StatusCode, string(answer), resp.Header.Get("WWW-Authenticate")
	}
	call := func(method, path, token, body string, headers ...string) (int, string) {
		t.Helper()
		authorization := ""
		if token != "" {
			authorization = "Bearer " + token
		}
		status, answer, _ := request(method, path, authorization, body, headers...)
		return status, answer
	}
	list := func(token string, headers ...string) []Note {
		t.Helper()
		status, body := call(http.MethodGet, "/notes", token, "", headers...)
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

	// alice's tokens are signed with the Ed25519 key, bob's with the P-256 one: the example takes
	// both, each with the algorithm its key is for.
	aliceToken := auth.Token(t, ed, alice, acme, "Admin")
	bobToken := auth.Token(t, ec, bob, globex, "Admin")
	if status, body, challenge := request(http.MethodGet, "/notes", "", ""); status != http.StatusUnauthorized ||
		challenge != `Bearer error="invalid_token"` || !strings.Contains(body, "invalid_token") {
		t.Fatalf("GET /notes without a token: %d %s (WWW-Authenticate %q), want 401 invalid_token", status, body, challenge)
	}
	if status, body := call(http.MethodPost, "/notes", "", `not json`); status != http.StatusUnauthorized {
		t.Errorf("POST /notes with neither token nor JSON: %d %s, want 401 before the body is read", status, body)
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

	// The token's scope guards the routes: a Member has no data:delete, a Viewer no data:write.
	carolToken := auth.Token(t, ed, carol, acme, "Member")
	if status, body := call(http.MethodDelete, "/notes/"+itoa(roadmap.ID), carolToken, ""); status != http.StatusForbidden ||
		!strings.Contains(body, "data:delete") {
		t.Errorf("carol (Member) deleting: %d %s, want 403 naming data:delete", status, body)
	}
	victorToken := auth.Token(t, ec, victor, acme, "Viewer")
	if status, body := call(http.MethodPost, "/notes", victorToken, `{"body":"from a viewer"}`); status != http.StatusForbidden ||
		!strings.Contains(body, "data:write") {
		t.Errorf("victor (Viewer) writing: %d %s, want 403 naming data:write", status, body)
	}
	if diff := cmp.Diff([]Note{roadmap}, list(victorToken)); diff != "" {
		t.Errorf("victor (Viewer) reads (-want +got):\n%s", diff)
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
	forged := auth.Sign(t, ed, ed.KID, nil,
		auth.Claims(t, alice, acme, "Admin", tctx.Key{ID: ed.KID, Secret: []byte("not the context key")}))
	if got := list(forged); len(got) != 0 {
		t.Errorf("a forged request context sees %v, want nothing", got)
	}
	if status, body := call(http.MethodPost, "/notes", forged, `{"body":"smuggled"}`); status != http.StatusForbidden {
		t.Errorf("a forged request context writing: %d %s, want 403", status, body)
	}

	// X-Tenancy-Project reaches the database as tenancy.project: narrowed to one of acme's
	// projects, alice still sees acme's notes (the table is organization-wide); narrowed to
	// globex's, her context is void and she sees nothing. A value that is no uuid is refused.
	if diff := cmp.Diff([]Note{roadmap}, list(aliceToken, tenancy.ProjectHeader, acmeWeb)); diff != "" {
		t.Errorf("alice narrowed to acme's project sees (-want +got):\n%s", diff)
	}
	if got := list(aliceToken, tenancy.ProjectHeader, globexWeb); len(got) != 0 {
		t.Errorf("alice narrowed to globex's project sees %v, want nothing", got)
	}
	if status, body := call(http.MethodGet, "/notes", aliceToken, "", tenancy.ProjectHeader, "web"); status != http.StatusForbidden {
		t.Errorf("narrowing to a project that is no uuid: %d %s, want 403", status, body)
	}

	// Requests the example refuses before the database: malformed bodies and ids.
	for _, body := range []string{``, `not json`, `{"body":""}`, `{"body":"  "}`, `{"body":5}`, `["x"]`, `{"text":"x"}`,
		`{"body":"` + strings.Repeat("x", 64<<10) + `"}`} {
		if status, answer := call(http.MethodPost, "/notes", aliceToken, body); status != http.StatusBadRequest ||
			!strings.Contains(answer, "invalid_request") {
			t.Errorf("POST /notes %.40q: %d %.200s, want 400 invalid_request", body, status, answer)
		}
	}
	for _, id := range []string{"abc", "1.5", "99999999999999999999"} {
		if status, body := call(http.MethodDelete, "/notes/"+id, aliceToken, ""); status != http.StatusBadRequest {
			t.Errorf("DELETE /notes/%s: %d %s, want 400", id, status, body)
		}
	}

	// Tokens the verifier refuses, each with 401 invalid_token, as pkg/tenancy's Verifier refuses them.
	now := time.Now()
	stranger, err := signing.NewKey(signing.EdDSA, now, now)
	if err != nil {
		t.Fatal(err)
	}
	valid := func() tenancy.Claims { return auth.Claims(t, alice, acme, "Admin", auth.ContextKey(ed.KID)) }
	with := func(change func(*tenancy.Claims)) tenancy.Claims {
		c := valid()
		change(&c)
		return c
	}
	invalid := []struct {
		name, authorization string
	}{
		{"not a bearer token", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))},
		{"an empty bearer token", "Bearer "},
		{"not a JWT", "Bearer not.a.jwt"},
		{"longer than 8 KiB", "Bearer " + strings.Repeat("a", 9000)},
		{"expired", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.IssuedAt, c.NotBefore = jwt.NewNumericDate(now.Add(-20*time.Minute)), jwt.NewNumericDate(now.Add(-20*time.Minute))
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-2 * time.Minute))
		}))},
		{"without exp", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) { c.ExpiresAt = nil }))},
		{"not yet valid", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute))
		}))},
		{"issued in the future", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(5 * time.Minute))
		}))},
		{"for another audience", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.Audience = jwt.ClaimStrings{"another-service"}
		}))},
		{"from another issuer", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.Issuer = "https://auth.example.com"
		}))},
		{"of no organization", "Bearer " + auth.Sign(t, ed, ed.KID, nil, with(func(c *tenancy.Claims) {
			c.Org, c.Role, c.Scope, c.TCtx = "", "", "", ""
		}))},
		{"not an access token (typ JWT)", "Bearer " + auth.Sign(t, ed, ed.KID, map[string]any{"typ": "JWT"}, valid())},
		{"signed by a key not in the JWKS, under a published kid", "Bearer " + auth.Sign(t, stranger, ed.KID, nil, valid())},
		{"signed by a key not in the JWKS, under its own kid", "Bearer " + auth.Sign(t, stranger, stranger.KID, nil, valid())},
		{"signed with EdDSA under the P-256 key's kid", "Bearer " + auth.Sign(t, ed, ec.KID, nil, valid())},
		{"claims changed after signing", "Bearer " + tamper(t, auth.Token(t, ed, carol, acme, "Member"),
			func(claims map[string]any) {
				claims["role"], claims["scope"] = "Owner", strings.Join(tenancy.Permissions("Owner"), " ")
			})},
		{"HS256 keyed with the public key", "Bearer " + hs256(t, ed, valid())},
		{"alg none", "Bearer " + unsigned(t, ed.KID, valid())},
	}
	for _, tc := range invalid {
		status, body, challenge := request(http.MethodGet, "/notes", tc.authorization, "")
		if status != http.StatusUnauthorized || challenge != `Bearer error="invalid_token"` {
			t.Errorf("a token %s: %d %s (WWW-Authenticate %q), want 401 invalid_token", tc.name, status, body, challenge)
		}
	}

	// Made-up kids cost at most one refetch of the JWKS per 10 seconds, not one per request.
	fetches := auth.JWKSFetches()
	for range 5 {
		unknown := auth.Sign(t, stranger, testenv.RandomHex(t, 8), nil, valid())
		if status, body := call(http.MethodGet, "/notes", unknown, ""); status != http.StatusUnauthorized {
			t.Errorf("a token of an unknown kid: %d %s, want 401", status, body)
		}
	}
	if more := auth.JWKSFetches() - fetches; more > 1 {
		t.Errorf("5 tokens of unknown kids made %d fetches of the JWKS, want at most 1", more)
	}

	// Alice, an Admin, deletes her organization's note; each change was audited as its principal.
	if status, body := call(http.MethodDelete, "/notes/"+itoa(roadmap.ID), aliceToken, ""); status != http.StatusNoContent {
		t.Errorf("alice deleting acme's note: %d %s, want 204", status, body)
	}
	if got := list(aliceToken); len(got) != 0 {
		t.Errorf("after deleting, alice sees %v, want nothing", got)
	}
	rows, err := pg.Pool().Query(ctx, `SELECT action, target, actor, actor_user_id::text, organization_id::text FROM tenancy.audit_log
	                                    WHERE action LIKE 'note.%' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	audited, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([5]string, error) {
		var a [5]string
		return a, r.Scan(&a[0], &a[1], &a[2], &a[3], &a[4])
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][5]string{
		{"note.created", "notes/" + itoa(roadmap.ID), alice, alice, acme},
		{"note.created", "notes/" + itoa(payroll.ID), bob, bob, globex},
		{"note.deleted", "notes/" + itoa(roadmap.ID), alice, alice, acme},
	}
	if diff := cmp.Diff(want, audited); diff != "" {
		t.Errorf("audit rows (-want +got):\n%s", diff)
	}
}

// pythonInterpreter is $TENANCY_PYTHON (make test sets it from hack/python.sh), or what
// hack/python.sh installs and prints. A Python that cannot import what the example needs fails
// the test: it never skips it.
func pythonInterpreter(t *testing.T) string {
	t.Helper()
	python := os.Getenv("TENANCY_PYTHON")
	if python == "" {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "python.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("hack/python.sh: %v", err)
		}
		python = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command(python, "-I", "-c", "import psycopg, psycopg_pool, jwt, cryptography, fastapi, uvicorn").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot run examples/notes-python (hack/python.sh installs what it needs): %v\n%s", python, err, out)
	}
	return python
}

// startApp runs notes.py on a free loopback port, configured as its README says, waits until it
// answers and returns its URL. It trusts the issuer's certificate through SSL_CERT_FILE, as make
// dev's authd is trusted. It is stopped with SIGTERM when t ends, and must exit cleanly; its log
// goes into t's when t fails.
func startApp(t *testing.T, python, databaseURL string, auth *testenv.Issuer) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The child inherits the environment; -I keeps PYTHON* variables and user site-packages out.
	t.Setenv("NOTES_DATABASE_URL", databaseURL)
	t.Setenv("TENANCY_ISSUER", auth.URL)
	t.Setenv("TENANCY_AUDIENCE", testenv.IssuerAudience)
	t.Setenv("NOTES_LISTEN", listen)
	t.Setenv("SSL_CERT_FILE", auth.CAFile)
	script := filepath.Join(testenv.RepoRoot(), "examples", "notes-python", "notes.py")
	app, err := testenv.StartProcess("notes.py", filepath.Join(t.TempDir(), "notes.log"), python, "-I", script)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := app.Stop(15 * time.Second); err != nil {
			t.Errorf("stopping notes.py: %v", err)
		}
		if t.Failed() {
			t.Logf("notes.py's log:\n%s", app.Log())
		}
	})
	base := "http://" + listen
	client := &http.Client{Timeout: 2 * time.Second}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if exited, err := app.Exited(); exited {
			t.Fatalf("notes.py exited (%v):\n%s", err, app.Log())
		}
		if resp, err := client.Get(base + "/notes"); err == nil {
			resp.Body.Close()
			return base
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("notes.py did not answer on %s within a minute:\n%s", listen, app.Log())
		}
	}
}

// tamper rewrites a signed token's claims and keeps its signature.
func tamper(t *testing.T, token string, change func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	change(claims)
	if payload, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// hs256 is the algorithm-confusion forgery: an HMAC keyed with the published public key, under
// that key's kid.
func hs256(t *testing.T, key signing.Key, claims tenancy.Claims) string {
	t.Helper()
	public, err := json.Marshal(signing.ToJWK(key.KID, key.Public()))
	if err != nil {
		t.Fatal(err)
	}
	token := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	token.Header["typ"] = tenancy.TokenType
	token.Header["kid"] = key.KID
	signed, err := token.SignedString(public)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// unsigned is a token with alg none under a published kid.
func unsigned(t *testing.T, kid string, claims tenancy.Claims) string {
	t.Helper()
	token := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	token.Header["typ"] = tenancy.TokenType
	token.Header["kid"] = kid
	signed, err := token.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// project makes a project row as the Project controller would, and returns its id.
func project(ctx context.Context, t *testing.T, pg *db.Postgres, orgID, name string) string {
	t.Helper()
	proj, err := pg.UpsertProject(ctx, db.Project{UID: uuid.NewString(), OrganizationID: orgID, Name: name, DisplayName: name}, db.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return proj.ID
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
