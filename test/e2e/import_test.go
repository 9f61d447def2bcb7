package e2e

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// checkImport runs quickstart section 13 on the stack: the schema of examples/legacy, imported
// with the tenancy command as the platform admin of .dev/env; then people sign in with their old
// passwords, the old API key trades for a token, and the table without organization_id comes
// under RLS through the SQL the import wrote.
func checkImport(c stackCheck) {
	c.t.Helper()
	root := testenv.RepoRoot()
	database := c.env["TENANCY_DATABASE_URL"]
	psql := func(args ...string) {
		c.t.Helper()
		cmd := exec.CommandContext(c.ctx, "psql", append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", database}, args...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			c.t.Fatalf("psql %v: %v\n%s", args, err, out)
		}
	}
	psql("-f", "examples/legacy/schema.sql")

	out := filepath.Join(c.state, "imported")
	tenancy := exec.CommandContext(c.ctx, "go", "run", "./cmd/tenancy", "import", "--source-url", database,
		"--database-url", database, "--mapping", "examples/legacy/mapping.yaml", "--out", out, "--apply")
	tenancy.Dir = root
	tenancy.Env = append(os.Environ(), "KUBECONFIG="+c.env["KUBECONFIG"])
	report, err := tenancy.Output()
	if err != nil {
		c.t.Fatalf("tenancy import: %v\n%s", err, report)
	}
	for _, want := range []string{"No problems.", "APIKey initech/reporting-bot, old key id imp_",
		"tickets: TenantTable tickets (organizationColumn organization_id)"} {
		if !strings.Contains(string(report), want) {
			c.t.Fatalf("the import's report lacks %q:\n%s", want, report)
		}
	}
	if members := c.kubectl("-n", "initech", "get", "memberships", "-o", "jsonpath={.items[*].status.state}"); members != "Active Active Active" {
		c.t.Fatalf("initech's memberships: %q, want three Active", members)
	}

	if status, body := c.login("Milton@Initech.example", "milton-old-password"); status != http.StatusOK {
		c.t.Fatalf("Milton signing in with the password of the old system: %d %v", status, body)
	}
	if status, _ := c.login("milton@initech.example", "not-his-password"); status != http.StatusUnauthorized {
		c.t.Fatalf("a wrong password: %d, want 401", status)
	}
	resp, err := c.authd.PostForm(c.env["TENANCY_AUTHD_URL"]+"/oauth2/token",
		url.Values{"grant_type": {"client_credentials"}, "client_secret": {"ik_live_4f1c9a7e2b8d4c6a9e3f5b7d1a2c4e6f"}})
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("the old API key at the token endpoint: %d, want 200", resp.StatusCode)
	}

	psql("-f", filepath.Join(out, "tenanttables", "pending", "ticket-comments.sql"))
	c.kubectl("apply", "-f", filepath.Join(out, "tenanttables", "pending", "ticket-comments.yaml"))
	c.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "tenanttables/tickets", "tenanttables/ticket-comments")
}
