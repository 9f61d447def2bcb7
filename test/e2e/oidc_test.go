package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

const (
	// kubectlClientID is the public OAuthClient that make dev applies for kubectl
	// (hack/devstack/kubectl-oauthclient.yaml): the audience kube-apiserver accepts.
	kubectlClientID = "kubectl.tenancy-system"
	// tenancyUsers is the group kube-apiserver gives every authd identity.
	tenancyUsers = "tenancy:users"
	sampleOwner  = "owner@acme.example"
	// samplePassword is the password with which the stack accepted the sample Owner's invitation.
	samplePassword = "tenancy-dev-password"
)

// checkKubectlAsOwner proves that kubectl works as a person signed in to authd: authd's discovery
// read with go-oidc, the code flow with PKCE run headlessly for the sample Owner, kube-apiserver
// taking the ID token (and refusing an access token) with the Owner's RBAC, and the
// kubectl-tenancy plugin signing in through .dev/kubeconfig-oidc with its loopback redirect.
func checkKubectlAsOwner(c stackCheck) {
	t := c.t
	t.Helper()
	issuer := c.env["TENANCY_AUTHD_URL"]
	// go-oidc and x/oauth2 reach authd through the client that trusts the dev CA.
	ctx := oidc.ClientContext(c.ctx, c.authd)

	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", issuer, err)
	}
	var discovery struct {
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		EndSessionEndpoint    string   `json:"end_session_endpoint"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
		SigningAlgorithms     []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&discovery); err != nil {
		t.Fatal(err)
	}
	if discovery.AuthorizationEndpoint != issuer+"/oauth2/authorize" || discovery.EndSessionEndpoint != issuer+"/oauth2/logout" ||
		!slices.Equal(discovery.CodeChallengeMethods, []string{"S256"}) || !slices.Contains(discovery.SigningAlgorithms, "ES256") {
		t.Fatalf("the discovery document lacks the authorization and end-session endpoints, PKCE S256 only, or ES256 (kube-apiserver takes no EdDSA): %+v", discovery)
	}

	// The code flow as kubectl-tenancy runs it, with a headless browser: a public client sends its
	// client_id alone, and nothing needs to listen at the loopback redirect for the code.
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	const redirect = "http://127.0.0.1:8000/callback"
	conf := oauth2.Config{ClientID: kubectlClientID, Endpoint: endpoint, RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess}}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	back := c.signIn(conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), sampleOwner, samplePassword)
	if q := back.Query(); back.Scheme+"://"+back.Host+back.Path != redirect || q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("authd sent the browser to %s, want %s with a code, the state and iss=%s", back, redirect, issuer)
	}
	tokens, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code with the PKCE verifier: %v", err)
	}
	idToken, _ := tokens.Extra("id_token").(string)
	verified, err := provider.Verifier(&oidc.Config{ClientID: kubectlClientID}).Verify(ctx, idToken)
	if err != nil {
		t.Fatalf("verifying the ID token for %s: %v", kubectlClientID, err)
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
	}
	if err := verified.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if verified.Nonce != nonce || claims.Email != sampleOwner || !claims.EmailVerified || tokens.RefreshToken == "" {
		t.Fatalf("the ID token has nonce %q (want %q) and email %q verified=%t, refresh token %t; want %s verified and a refresh token (offline_access)",
			verified.Nonce, nonce, claims.Email, claims.EmailVerified, tokens.RefreshToken != "", sampleOwner)
	}

	// kube-apiserver takes the ID token, without the admin's kubeconfig: the Owner's RBAC decides.
	server := c.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	caData, err := base64.StdEncoding.DecodeString(c.kubectl("config", "view", "--raw", "--minify",
		"-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"))
	if err != nil {
		t.Fatal(err)
	}
	apiserverCA := filepath.Join(t.TempDir(), "apiserver-ca.crt")
	if err := os.WriteFile(apiserverCA, caData, 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := func(token string, args ...string) (string, string, error) {
		t.Helper()
		return c.runKubectl(nil, append([]string{"--kubeconfig=/dev/null", "--server=" + server,
			"--certificate-authority=" + apiserverCA, "--token=" + token}, args...)...)
	}
	out, stderr, err := withToken(idToken, "auth", "whoami", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl auth whoami with the ID token: %v\n%s", err, stderr)
	}
	checkWhoami(c, out)
	if out, stderr, err := withToken(idToken, "auth", "can-i", "list", "projects", "-n", "acme"); err != nil || out != "yes\n" {
		t.Fatalf("kubectl auth can-i list projects -n acme as the Owner: %v %q\n%s", err, out, stderr)
	}
	// can-i exits with 1 when the answer is no.
	if out, stderr, err := withToken(idToken, "auth", "can-i", "create", "organizations"); err == nil || out != "no\n" {
		t.Fatalf("kubectl auth can-i create organizations as the Owner (only platform admins may): %v %q\n%s", err, out, stderr)
	}
	// An access token of authd's own login is not an ID token for kubectl's client.
	status, login := c.login(sampleOwner, samplePassword)
	access, _ := login["access_token"].(string)
	if status != http.StatusOK || access == "" {
		t.Fatalf("logging in as the sample Owner: %d %v", status, login)
	}
	if out, stderr, err := withToken(access, "auth", "whoami"); err == nil ||
		!strings.Contains(stderr, "You must be logged in to the server (Unauthorized)") {
		t.Fatalf("kubectl auth whoami with an access token instead of the ID token: %v %q\n%s", err, out, stderr)
	}

	checkPluginSignIn(c)
}

// checkPluginSignIn runs kubectl with the stack's kubeconfig-oidc and the kubectl-tenancy plugin
// built from this checkout: the plugin prints the sign-in URL, the headless browser signs in and
// comes back to the plugin's loopback listener, and kubectl lists acme's projects as the Owner.
// A second command uses the cached token.
func checkPluginSignIn(c stackCheck) {
	t := c.t
	t.Helper()
	bin := t.TempDir()
	build := exec.CommandContext(c.ctx, "go", "build", "-o", filepath.Join(bin, "kubectl-tenancy"), "./cmd/kubectl-tenancy")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-tenancy: %v\n%s", err, out)
	}

	// The stack's kubeconfig-oidc as it is, but without opening a browser and with a cache of its
	// own, so that the sign-in happens here and nothing outside the test is read or written.
	stackKubeconfig := filepath.Join(c.state, "kubeconfig-oidc")
	config, err := clientcmd.LoadFromFile(stackKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	current := config.Contexts[config.CurrentContext]
	if current == nil || config.AuthInfos[current.AuthInfo] == nil || config.AuthInfos[current.AuthInfo].Exec == nil {
		t.Fatalf("%s: its current context %q has no user with an exec plugin", stackKubeconfig, config.CurrentContext)
	}
	plugin := config.AuthInfos[current.AuthInfo].Exec
	if plugin.Command != "kubectl-tenancy" || len(plugin.Args) == 0 || plugin.Args[0] != "get-token" ||
		!slices.Contains(plugin.Args, "--issuer="+c.env["TENANCY_AUTHD_URL"]) || !slices.Contains(plugin.Args, "--client-id="+kubectlClientID) ||
		!slices.Contains(plugin.Args, "--certificate-authority="+c.env["TENANCY_CA_FILE"]) {
		t.Fatalf("%s runs %s %v, want kubectl-tenancy get-token with authd's issuer, %s and the dev CA",
			stackKubeconfig, plugin.Command, plugin.Args, kubectlClientID)
	}
	plugin.Args = append(plugin.Args, "--no-browser", "--cache-dir="+filepath.Join(t.TempDir(), "cache"))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig-oidc")
	if err := clientcmd.WriteToFile(*config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	pathEnv := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}

	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	cmd := c.kubectlCommand(ctx, pathEnv, "--kubeconfig="+kubeconfig, "get", "projects", "-n", "acme")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The plugin's stderr reaches kubectl's: the sign-in URL is read from it as it comes.
	signInURL := make(chan string, 1)
	var stderr []string // the scanner's until scanned is closed
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		lines := bufio.NewScanner(stderrPipe)
		for lines.Scan() {
			stderr = append(stderr, lines.Text())
			if u, ok := strings.CutPrefix(lines.Text(), "Open this URL to sign in: "); ok {
				select {
				case signInURL <- u:
				default:
				}
			}
		}
	}()
	stop := func() string {
		cancel()
		<-scanned
		_ = cmd.Wait()
		return strings.Join(stderr, "\n")
	}
	var authURL string
	select {
	case authURL = <-signInURL:
	case <-scanned:
		t.Fatalf("kubectl with the plugin printed no sign-in URL:\n%s", stop())
	}
	back := c.signIn(authURL, sampleOwner, samplePassword)
	if back.Scheme != "http" || back.Hostname() != "127.0.0.1" || back.Path != "/callback" {
		t.Fatalf("authd sent the browser to %s, not to the plugin's loopback listener:\n%s", back, stop())
	}
	// The browser reaches the plugin, which answers once it holds a verified ID token.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, back.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the plugin's loopback listener: %v\n%s", err, stop())
	}
	page, _ := io.ReadAll(answer.Body)
	_ = answer.Body.Close()
	if answer.StatusCode != http.StatusOK || !strings.Contains(string(page), "Signed in") {
		t.Fatalf("the plugin answered the redirect with %s:\n%s\nkubectl's stderr:\n%s", answer.Status, page, stop())
	}
	<-scanned
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl --kubeconfig kubeconfig-oidc get projects -n acme: %v\n%s", err, strings.Join(stderr, "\n"))
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
		if fields := strings.Fields(line); len(fields) > 0 {
			names = append(names, fields[0])
		}
	}
	if !slices.Equal(names, []string{"billing", "web"}) {
		t.Fatalf("kubectl as the Owner lists projects %v in acme, want the samples billing and web:\n%s", names, stdout.String())
	}

	// The next command takes the cached ID token: no sign-in, the Owner again.
	out, errOut, err := c.runKubectl(pathEnv, "--kubeconfig="+kubeconfig, "auth", "whoami", "-o", "json")
	if err != nil || strings.Contains(errOut, "Open this URL") {
		t.Fatalf("kubectl auth whoami after signing in: %v\n%s", err, errOut)
	}
	checkWhoami(c, out)
}

// checkWhoami checks that `kubectl auth whoami -o json` answered the sample Owner, as an authd
// identity.
func checkWhoami(c stackCheck, out string) {
	c.t.Helper()
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil {
		c.t.Fatalf("kubectl auth whoami -o json: %v\n%s", err, out)
	}
	if user := review.Status.UserInfo; user.Username != sampleOwner || !slices.Contains(user.Groups, tenancyUsers) {
		c.t.Fatalf("kube-apiserver takes the ID token for %q in %v, want %s in %s", user.Username, user.Groups, sampleOwner, tenancyUsers)
	}
}

// runKubectl runs the stack's kubectl with env added to the test's, and answers its stdout and
// stderr apart.
func (c stackCheck) runKubectl(env []string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	cmd := c.kubectlCommand(ctx, env, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// kubectlCommand is the stack's kubectl in a process group of its own: when ctx ends, the
// credential plugin it runs ends with it instead of waiting for a sign-in.
func (c stackCheck) kubectlCommand(ctx context.Context, env []string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(assetsDir(c.t), "kubectl"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// signIn runs the authorization request authURL in a headless browser of authd (a cookie jar,
// redirects followed inside authd only): the login page, its form posted as email with the CSRF
// token of its hidden field and cookie, and authd's redirects until the one that leaves authd,
// which it returns.
func (c stackCheck) signIn(authURL, email, password string) *url.URL {
	t := c.t
	t.Helper()
	issuer := c.env["TENANCY_AUTHD_URL"]
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Transport: c.authd.Transport, Timeout: time.Minute,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme+"://"+req.URL.Host != issuer {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	open := func(req *http.Request) (*http.Response, string) {
		t.Helper()
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, authURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	page, body := open(req)
	if page.StatusCode != http.StatusOK || page.Request.URL.Path != "/login" {
		t.Fatalf("the authorization request ended at %s (%s), not at the login page:\n%s", page.Request.URL, page.Status, body)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	if form.Get("csrf_token") == "" || form.Get("next") == "" || !slices.ContainsFunc(jar.Cookies(page.Request.URL), func(k *http.Cookie) bool {
		return k.Value == form.Get("csrf_token")
	}) {
		t.Fatalf("the login page has no CSRF token in both a hidden field and a cookie, or no next: %v", form)
	}
	form.Set("email", email)
	form.Set("password", password)
	req, err = http.NewRequestWithContext(c.ctx, http.MethodPost, issuer+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", issuer) // as a browser posts the form
	resp, body := open(req)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logging in at %s: %s, want a 303 out of authd:\n%s", resp.Request.URL, resp.Status, body)
	}
	back, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	return back
}
