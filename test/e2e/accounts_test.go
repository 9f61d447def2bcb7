package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// stackCheck is what the dev stack's test hands its checks: the stack's .dev/env, kubectl, and a
// wait that fails the test when the stack exits or time runs out.
type stackCheck struct {
	t       *testing.T
	ctx     context.Context
	env     map[string]string
	state   string
	kubectl func(args ...string) string
	// authd is a client of authd's HTTPS that trusts the stack's CA.
	authd   *http.Client
	waitFor func(done func() bool)
}

// httpJSON sends a JSON body (none when body is "") with an optional bearer token and decodes
// the JSON answer.
func (c stackCheck) httpJSON(method, path, bearer, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, method, c.env["TENANCY_AUTHD_URL"]+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.authd.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer
}

func (c stackCheck) login(email, password string) (int, map[string]any) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return c.httpJSON(http.MethodPost, "/auth/login", "", string(body))
}

// apply writes manifest into the stack's state directory and applies it.
func (c stackCheck) apply(name, manifest string) {
	c.t.Helper()
	file := filepath.Join(c.state, name+".yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.kubectl("apply", "-f", file)
}

// mailTo waits for a mail to address whose subject holds subject and returns its text.
func (c stackCheck) mailTo(address, subject string) string {
	c.t.Helper()
	mailpit := testenv.MailpitAt(c.env["TENANCY_MAIL_URL"])
	var id string
	c.waitFor(func() bool {
		messages, err := mailpit.MessagesTo(c.ctx, address)
		if err != nil {
			return false
		}
		i := slices.IndexFunc(messages, func(m testenv.MailpitMessage) bool { return strings.Contains(m.Subject, subject) })
		if i >= 0 {
			id = messages[i].ID
		}
		return i >= 0
	})
	detail, err := mailpit.Message(c.ctx, id)
	if err != nil {
		c.t.Fatal(err)
	}
	return detail.Text
}

// checkAccountLifecycle disables the sample Owner with kubectl and enables them again, reads the
// suspensions through the admin API with a service account's token, and lets a new member delete
// their account: the Membership goes, the account is erased and a last mail confirms it.
func checkAccountLifecycle(c stackCheck) {
	t := c.t
	t.Helper()
	const owner, ownerPassword = "owner@acme.example", "tenancy-dev-password"
	c.apply("suspension", "apiVersion: tenancy.dev/v1alpha1\nkind: AccountSuspension\nmetadata:\n  name: e2e-owner\nspec:\n  email: "+owner+"\n  reason: e2e\n")
	c.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "accountsuspension/e2e-owner")
	if status, answer := c.login(owner, ownerPassword); status != http.StatusUnauthorized {
		t.Fatalf("a suspended Owner logged in: %d %v", status, answer)
	}
	c.kubectl("-n", "tenancy-system", "create", "serviceaccount", "tenancy-admin")
	token := strings.TrimSpace(c.kubectl("-n", "tenancy-system", "create", "token", "tenancy-admin"))
	status, listed := c.httpJSON(http.MethodGet, "/api/v1/admin/suspensions", token, "")
	if items, _ := listed["items"].([]any); status != http.StatusOK || len(items) != 1 || items[0].(map[string]any)["email"] != owner {
		t.Fatalf("the admin API with the dev stack's platform admin token: %d %v", status, listed)
	}
	c.kubectl("delete", "accountsuspension", "e2e-owner", "--wait=true", "--timeout=60s")
	c.waitFor(func() bool { status, _ := c.login(owner, ownerPassword); return status == http.StatusOK })

	const leaver, leaverPassword = "leaver@acme.example", "a long enough e2e password"
	c.apply("leaver", "apiVersion: tenancy.dev/v1alpha1\nkind: Membership\nmetadata:\n  name: leaver\n  namespace: acme\nspec:\n  user: "+leaver+"\n")
	link, ok := testenv.FirstLink(c.mailTo(leaver, "You are invited"), c.env["TENANCY_AUTHD_URL"]+"/invite?token=")
	if !ok {
		t.Fatal("the invitation mail holds no link")
	}
	parsed, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	accept, _ := json.Marshal(map[string]string{"token": parsed.Query().Get("token"), "password": leaverPassword})
	if status, answer := c.httpJSON(http.MethodPost, "/auth/invitations/accept", "", string(accept)); status != http.StatusOK {
		t.Fatalf("accepting the mailed invitation: %d %v", status, answer)
	}
	_, tokens := c.login(leaver, leaverPassword)
	access, _ := tokens["access_token"].(string)
	deletion, _ := json.Marshal(map[string]string{"password": leaverPassword})
	if status, answer := c.httpJSON(http.MethodDelete, "/api/v1/me", access, string(deletion)); status != http.StatusAccepted {
		t.Fatalf("deleting the account: %d %v", status, answer)
	}
	c.mailTo(leaver, "Your account was deleted")
	c.waitFor(func() bool {
		cmd := exec.CommandContext(c.ctx, filepath.Join(assetsDir(t), "kubectl"), "-n", "acme", "get", "membership", "leaver")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.env["KUBECONFIG"])
		out, err := cmd.CombinedOutput()
		return err != nil && strings.Contains(string(out), "NotFound")
	})
}
