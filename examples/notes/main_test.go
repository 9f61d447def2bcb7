package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	acme, globex := testenv.CreateOrganization(ctx, t, pg, "acme"), testenv.CreateOrganization(ctx, t, pg, "globex")
	alice := testenv.CreateMember(ctx, t, pg, acme, "alice@acme.test", "Admin")
	carol := testenv.CreateMember(ctx, t, pg, acme, "carol@acme.test", "Member")
	bob := testenv.CreateMember(ctx, t, pg, globex, "bob@globex.test", "Admin")

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

	pool, err := pgxpool.New(ctx, testenv.CreateLogin(ctx, t, database.URL, "notes_app_", "tenancy_app"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// authd's part: an Ed25519 signing key published in a JWKS over HTTP, and the context key of
	// the same id in tenancy.context_keys, which signs the tokens' tctx.
	auth := testenv.StartIssuer(ctx, t, pg, testenv.IssuerOptions{Algorithms: []string{signing.EdDSA}})
	key := auth.Keys[0]
	verifier := tenancy.NewVerifier(auth.URL, testenv.IssuerAudience, tenancy.NewJWKSCache(auth.JWKSURL()))
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

	aliceToken, bobToken := auth.Token(t, key, alice, acme, "Admin"), auth.Token(t, key, bob, globex, "Admin")
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
	carolToken := auth.Token(t, key, carol, acme, "Member")
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
	forged := auth.Sign(t, key, key.KID, nil,
		auth.Claims(t, alice, acme, "Admin", tctx.Key{ID: key.KID, Secret: []byte("not the context key")}))
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

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
