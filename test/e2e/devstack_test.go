// Package e2e runs the system as a user does: `make dev`'s stack, driven with kubectl.
package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestDevStack starts the dev stack, checks that the samples are Ready and stored (their invitation
// and API key Secrets included), that the admission policy and webhooks refuse what they should,
// that a platform admin disables accounts and a person deletes theirs (accounts_test.go), that
// kubectl works as the sample Owner signed in to authd, with an ID token and through the
// kubectl-tenancy plugin (oidc_test.go), that an existing schema imports (import_test.go), that deleting an organization really deletes the
// namespace it created (kube-controller-manager runs), and that an interrupt stops every process
// it started.
func TestDevStack(t *testing.T) {
	testenv.SkipIfShort(t, "envtest, PostgreSQL and hack/devstack built from source")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := testenv.RepoRoot()
	bin := filepath.Join(t.TempDir(), "devstack")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./hack/devstack")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building devstack: %v\n%s", err, out)
	}

	state := t.TempDir()
	database := "tenancy_e2e_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	stack := exec.Command(bin, "--state", state, "--database", database)
	stack.Dir = root
	output, err := os.Create(filepath.Join(state, "devstack.out"))
	if err != nil {
		t.Fatal(err)
	}
	stack.Stdout, stack.Stderr = output, output
	if err := stack.Start(); err != nil {
		t.Fatal(err)
	}
	exited, stopped := make(chan error, 1), make(chan struct{})
	go func() { exited <- stack.Wait(); close(stopped) }()
	t.Cleanup(func() {
		// A failed test interrupts the stack, as Ctrl-C does, so that it stops what it started;
		// killing it would leave its API server, manager, authd and Mailpit running.
		select {
		case <-stopped:
		default:
			_ = stack.Process.Signal(syscall.SIGINT)
			select {
			case <-stopped:
			case <-time.After(60 * time.Second):
				_ = stack.Process.Kill()
			}
		}
		dropDatabase(t, database)
	})
	dump := func() string { b, _ := os.ReadFile(output.Name()); return string(b) }

	envFile := filepath.Join(state, "env")
	waitFor(t, ctx, exited, dump, func() bool { _, err := os.Stat(envFile); return err == nil })
	env := readEnv(t, envFile)
	if env["KUBECONFIG"] == "" || env["TENANCY_DATABASE_URL"] == "" || env["TENANCY_AUTHD_URL"] == "" || env["TENANCY_CA_FILE"] == "" || env["TENANCY_MAIL_URL"] == "" {
		t.Fatalf(".dev/env lacks KUBECONFIG, TENANCY_DATABASE_URL, TENANCY_AUTHD_URL, TENANCY_CA_FILE or TENANCY_MAIL_URL: %v", env)
	}
	// authd serves HTTPS with a certificate of the stack's CA (an https issuer is what
	// kube-apiserver trusts): it is reached with that CA, as curl --cacert does.
	if !strings.HasPrefix(env["TENANCY_AUTHD_URL"], "https://localhost:") {
		t.Fatalf("TENANCY_AUTHD_URL = %q, want https://localhost:<port>", env["TENANCY_AUTHD_URL"])
	}
	authd := trustingClient(t, env["TENANCY_CA_FILE"])
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(assetsDir(t), "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env["KUBECONFIG"])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// The stack says which release runs, and its webhooks serve the certificate the manager keeps
	// in a Secret, as config/self-signed does in a cluster.
	release, err := testenv.ReleaseVersion()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, exited, dump, func() bool { return strings.Contains(dump(), "Tenancy "+release+" is running.") })
	if got := kubectl("get", "secret", "-n", "tenancy-system", "webhook-server-cert", "-o", "jsonpath={.type}"); got != "kubernetes.io/tls" {
		t.Fatalf("the webhook certificate Secret tenancy-system/webhook-server-cert has type %q, want kubernetes.io/tls", got)
	}
	if got := kubectl("get", "org", "acme", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"); got != "True" {
		t.Fatalf("sample organization acme Ready = %q, want True", got)
	}
	conn, err := pgx.Connect(ctx, env["TENANCY_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var projects int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM tenancy.projects p JOIN tenancy.organizations o ON o.id = p.organization_id
	                              WHERE o.name = 'acme'`).Scan(&projects); err != nil {
		t.Fatal(err)
	}
	if projects != 2 {
		t.Fatalf("acme has %d project rows, want the 2 samples", projects)
	}
	// The stack mails invitations: the Secret holds no link, Mailpit holds the mail.
	if got := kubectl("get", "secret", "-n", "acme", "admin-invite", "-o", "jsonpath={.data.delivery}"); got != base64.StdEncoding.EncodeToString([]byte("Email")) {
		t.Fatalf("the sample Admin's invitation Secret has delivery %q, want Email", got)
	}
	if got := kubectl("get", "secret", "-n", "acme", "admin-invite", "-o", "jsonpath={.data.url}"); got != "" {
		t.Fatal("the sample Admin's mailed invitation left a usable link in its Secret")
	}
	waitFor(t, ctx, exited, dump, func() bool {
		resp, err := http.Get(env["TENANCY_MAIL_URL"] + "/api/v1/search?query=" + url.QueryEscape(`to:"admin@acme.example" subject:"You are invited"`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var found struct {
			MessagesCount int `json:"messages_count"`
		}
		return json.NewDecoder(resp.Body).Decode(&found) == nil && found.MessagesCount > 0
	})
	if got := kubectl("get", "membership", "-n", "acme", "owner", "-o", "jsonpath={.status.state}"); got != "Active" {
		t.Fatalf("the sample Owner, whose invitation the stack accepted, is %q, not Active", got)
	}
	if got := kubectl("get", "secret", "-n", "acme", "ci-apikey", "-o", "jsonpath={.data.keyID}"); got == "" {
		t.Fatal("the sample API key has no Secret")
	}

	// authd runs: the sample Owner (whose invitation the stack accepted) logs in, and the sample
	// API key trades for a token, as the printed curl lines do.
	login, err := authd.Post(env["TENANCY_AUTHD_URL"]+"/auth/login", "application/json",
		strings.NewReader(`{"email":"owner@acme.example","password":"tenancy-dev-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tokens map[string]any
	_ = json.NewDecoder(login.Body).Decode(&tokens)
	_ = login.Body.Close()
	if login.StatusCode != http.StatusOK || tokens["access_token"] == nil || tokens["organization"] != "acme" {
		t.Fatalf("logging in as the sample Owner: %s %v", login.Status, tokens)
	}
	// The self-service API acts as the Owner in the cluster (authd impersonates them), and the
	// login page that make dev prints is served.
	members, _ := http.NewRequest(http.MethodGet, env["TENANCY_AUTHD_URL"]+"/api/v1/organizations/acme/members", nil)
	members.Header.Set("Authorization", "Bearer "+tokens["access_token"].(string))
	listed, err := authd.Do(members)
	if err != nil {
		t.Fatal(err)
	}
	var memberList struct {
		Items []struct{ Email, Role string } `json:"items"`
	}
	_ = json.NewDecoder(listed.Body).Decode(&memberList)
	_ = listed.Body.Close()
	if listed.StatusCode != http.StatusOK || !slices.ContainsFunc(memberList.Items, func(m struct{ Email, Role string }) bool {
		return m.Email == "owner@acme.example" && m.Role == "Owner"
	}) {
		t.Fatalf("listing acme's members through the self-service API: %s %+v", listed.Status, memberList)
	}
	loginPage, err := authd.Get(env["TENANCY_AUTHD_URL"] + "/login")
	if err != nil {
		t.Fatal(err)
	}
	_ = loginPage.Body.Close()
	if loginPage.StatusCode != http.StatusOK || !strings.Contains(loginPage.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("the login page: %s, CSP %q", loginPage.Status, loginPage.Header.Get("Content-Security-Policy"))
	}

	keyID, err := base64.StdEncoding.DecodeString(kubectl("get", "secret", "-n", "acme", "ci-apikey", "-o", "jsonpath={.data.keyID}"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(kubectl("get", "secret", "-n", "acme", "ci-apikey", "-o", "jsonpath={.data.apiKey}"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, env["TENANCY_AUTHD_URL"]+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(string(keyID), string(key))
	token, err := authd.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = token.Body.Close()
	if token.StatusCode != http.StatusOK {
		t.Fatalf("trading the sample API key for a token: %s", token.Status)
	}

	// RLS at work on the sample TenantTable: as an application (tenancy_app) with the sample
	// Owner's request context, public.notes shows acme's rows only.
	if got := kubectl("get", "tt", "notes", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"); got != "True" {
		t.Fatalf("sample TenantTable notes Ready = %q, want True", got)
	}
	var acmeID, ownerID string
	if err := conn.QueryRow(ctx, `SELECT o.id, u.id FROM tenancy.organizations o, tenancy.users u
	                              WHERE o.name = 'acme' AND u.email = 'owner@acme.example'`).Scan(&acmeID, &ownerID); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO public.notes (org_id, body) VALUES ($1, 'ours'), (gen_random_uuid(), 'theirs')", acmeID); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Signed as authd would (the superuser may), then used as the application.
		if _, err := tx.Exec(ctx, `SELECT set_config('tenancy.context', tenancy.sign_context($1, NULL, $2, NULL, interval '5 minutes'), true)`,
			ownerID, acmeID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT body FROM public.notes")
		if err != nil {
			return err
		}
		bodies, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 1 || bodies[0] != "ours" {
		t.Fatalf("through RLS the sample Owner sees %v, want only acme's note", bodies)
	}

	// The admission policy is installed: not even a cluster admin relabels a tenant namespace.
	relabel := exec.CommandContext(ctx, filepath.Join(assetsDir(t), "kubectl"), "label", "namespace", "acme",
		"tenancy.dev/organization=evil", "--overwrite")
	relabel.Env = append(os.Environ(), "KUBECONFIG="+env["KUBECONFIG"])
	if out, err := relabel.CombinedOutput(); err == nil || !strings.Contains(string(out), "only the Tenancy operator") {
		t.Fatalf("relabelling a tenant namespace as cluster admin: err=%v, output:\n%s", err, out)
	}

	// The webhooks are installed and answer: the sample Admin, whom RBAC lets edit memberships,
	// may not demote the Owner, and neither may a cluster admin demote the last Owner.
	demote := func(as ...string) (string, error) {
		args := append(as, "-n", "acme", "patch", "membership", "owner", "--type=merge", "-p", `{"spec":{"role":"Admin"}}`)
		cmd := exec.CommandContext(ctx, filepath.Join(assetsDir(t), "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env["KUBECONFIG"])
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := demote("--as=admin@acme.example", "--as-group=system:authenticated"); err == nil ||
		!strings.Contains(out, "spec.role: Forbidden: admin@acme.example is Admin in acme and cannot demote an Owner") {
		t.Fatalf("the sample Admin demoting the Owner: err=%v, output:\n%s", err, out)
	}
	if out, err := demote(); err == nil || !strings.Contains(out, "acme would have no Owner left") {
		t.Fatalf("a cluster admin demoting the last Owner: err=%v, output:\n%s", err, out)
	}

	check := stackCheck{t: t, ctx: ctx, env: env, state: state, kubectl: kubectl, authd: authd,
		waitFor: func(done func() bool) { t.Helper(); waitFor(t, ctx, exited, dump, done) }}
	checkAccountLifecycle(check)
	// After the lifecycle, which suspended the Owner and enabled them again.
	checkKubectlAsOwner(check)
	checkImport(check)

	// An organization whose namespace the operator creates: deleting it deletes the namespace for
	// real, which takes kube-controller-manager's namespace controller.
	orgFile := filepath.Join(state, "temp-org.yaml")
	if err := os.WriteFile(orgFile, []byte("apiVersion: tenancy.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: e2e-temp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", orgFile)
	kubectl("wait", "--for=condition=Ready", "--timeout=60s", "org/e2e-temp")
	kubectl("get", "namespace", "e2e-temp")
	kubectl("delete", "org", "e2e-temp", "--wait=true", "--timeout=60s")
	waitFor(t, ctx, exited, dump, func() bool {
		out := kubectl("get", "namespaces", "-o", "name")
		return !strings.Contains(out, "namespace/e2e-temp\n")
	})

	if err := stack.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("devstack exited with %v after an interrupt\n%s", err, dump())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("devstack did not stop within 60s of an interrupt\n%s", dump())
	}
	if out, _ := exec.Command("pgrep", "-f", state).Output(); len(out) > 0 {
		t.Fatalf("processes of the stack survived the interrupt: %s", out)
	}
}

// trustingClient is an HTTP client that trusts the CA in caFile, and no other.
func trustingClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(readFile(t, caFile)) {
		t.Fatalf("%s holds no PEM certificate", caFile)
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func assetsDir(t *testing.T) string {
	t.Helper()
	assets, err := testenv.BinaryAssets()
	if err != nil {
		t.Fatal(err)
	}
	return assets
}

func waitFor(t *testing.T, ctx context.Context, exited chan error, dump func() string, done func() bool) {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case err := <-exited:
			t.Fatalf("devstack exited early (%v):\n%s", err, dump())
		case <-ctx.Done():
			t.Fatalf("timed out:\n%s", dump())
		case <-tick.C:
		}
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

func dropDatabase(t *testing.T, name string) {
	serverURL, err := testenv.ServerURL()
	if err != nil {
		t.Log(err)
		return
	}
	conn, err := pgx.Connect(context.Background(), serverURL)
	if err != nil {
		t.Log(err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
		t.Log(err)
	}
}
