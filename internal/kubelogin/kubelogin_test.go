package kubelogin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

const testClientID = "kubectl.tenancy-system"

// fakeProvider is the remote side of the sign-in: an OpenID provider on httptest with discovery,
// a JWKS of an ES256 key made here, an authorization endpoint that sends the browser straight back
// with a code (the person has a session and consented), a token endpoint that checks PKCE S256 and
// the client's authentication, and revocation. Its fields change how it answers.
type fakeProvider struct {
	t      *testing.T
	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	secret string // the client's secret; empty for a public client

	mu            sync.Mutex
	requests      int
	authorizeReqs []url.Values
	refreshes     int
	codes         map[string]url.Values // code → its authorization request
	refreshTokens map[string]bool
	revoked       []string

	// How it answers.
	idTokenTTL    time.Duration
	state         string // sent back instead of the request's state
	refuse        url.Values
	nonce         string // put into the ID token instead of the request's nonce
	audience      string // put into the ID token instead of the client ID
	refuseRefresh bool
}

func newFakeProvider(t *testing.T) *fakeProvider {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeProvider{t: t, key: key, codes: map[string]url.Values{}, refreshTokens: map[string]bool{}, idTokenTTL: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /jwks", f.jwks)
	mux.HandleFunc("GET /oauth2/authorize", f.authorize)
	mux.HandleFunc("POST /oauth2/token", f.token)
	mux.HandleFunc("POST /oauth2/revoke", f.revoke)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests++
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProvider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": f.srv.URL, "authorization_endpoint": f.srv.URL + "/oauth2/authorize", "token_endpoint": f.srv.URL + "/oauth2/token",
		"jwks_uri": f.srv.URL + "/jwks", "revocation_endpoint": f.srv.URL + "/oauth2/revoke",
		"id_token_signing_alg_values_supported": []string{"ES256"}, "response_types_supported": []string{"code"},
		"code_challenge_methods_supported": []string{"S256"},
	})
}

func (f *fakeProvider) jwks(w http.ResponseWriter, _ *http.Request) {
	point, err := f.key.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		f.t.Error(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1", "x": b64(point[1:33]), "y": b64(point[33:]),
	}}})
}

func (f *fakeProvider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case err != nil || redirect.Scheme != "http" || redirect.Hostname() != "127.0.0.1" || redirect.Path != "/callback":
		f.t.Errorf("authorize: redirect_uri %q is not a loopback /callback", q.Get("redirect_uri"))
	case q.Get("client_id") != testClientID || q.Get("response_type") != "code":
		f.t.Errorf("authorize: client_id %q, response_type %q", q.Get("client_id"), q.Get("response_type"))
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		f.t.Errorf("authorize: code_challenge %q with method %q is not S256", q.Get("code_challenge"), q.Get("code_challenge_method"))
	case q.Get("state") == "" || q.Get("nonce") == "":
		f.t.Errorf("authorize: state %q, nonce %q", q.Get("state"), q.Get("nonce"))
	default:
		f.mu.Lock()
		defer f.mu.Unlock()
		f.authorizeReqs = append(f.authorizeReqs, q)
		answer := url.Values{"state": {q.Get("state")}, "iss": {f.srv.URL}}
		if f.state != "" {
			answer.Set("state", f.state)
		}
		if f.refuse != nil {
			for k, v := range f.refuse {
				answer[k] = v
			}
		} else {
			code := base64.RawURLEncoding.EncodeToString(randomBytes(16))
			f.codes[code] = q
			answer.Set("code", code)
		}
		redirect.RawQuery = answer.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
		return
	}
	http.Error(w, "bad authorization request", http.StatusBadRequest)
}

func (f *fakeProvider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if !f.clientAuthenticated(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var nonce string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		req, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		switch {
		case !ok || r.PostForm.Get("redirect_uri") != req.Get("redirect_uri"):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "unknown code or another redirect_uri"})
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != req.Get("code_challenge"):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verification failed"})
			return
		}
		nonce = req.Get("nonce")
	case "refresh_token":
		f.refreshes++
		presented := r.PostForm.Get("refresh_token")
		if f.refuseRefresh || !f.refreshTokens[presented] {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "the session has ended"})
			return
		}
		delete(f.refreshTokens, presented) // rotated
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if f.nonce != "" {
		nonce = f.nonce
	}
	refresh := "tnr_" + base64.RawURLEncoding.EncodeToString(randomBytes(16))
	f.refreshTokens[refresh] = true
	writeJSON(w, http.StatusOK, map[string]any{"access_token": "access", "token_type": "Bearer", "expires_in": 900,
		"id_token": f.idToken(nonce), "refresh_token": refresh})
}

// clientAuthenticated: a public client sends its client_id alone in the form, a confidential one
// its secret with HTTP Basic.
func (f *fakeProvider) clientAuthenticated(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if f.secret == "" {
		return !basic && r.PostForm.Get("client_id") == testClientID && !r.PostForm.Has("client_secret")
	}
	return basic && id == testClientID && secret == f.secret
}

func (f *fakeProvider) idToken(nonce string) string {
	aud := testClientID
	if f.audience != "" {
		aud = f.audience
	}
	now := time.Now()
	claims := jwt.MapClaims{"iss": f.srv.URL, "sub": "user-1", "aud": aud, "exp": now.Add(f.idTokenTTL).Unix(), "iat": now.Unix(),
		"email": "owner@acme.example", "email_verified": true, "org": "org-1", "org_name": "acme", "role": "Owner",
		"jti": base64.RawURLEncoding.EncodeToString(randomBytes(8))}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = "k1"
	signed, err := t.SignedString(f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return signed
}

func (f *fakeProvider) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !f.clientAuthenticated(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, r.PostForm.Get("token"))
	delete(f.refreshTokens, r.PostForm.Get("token"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// counts answers how many requests and authorization requests the provider has had.
func (f *fakeProvider) counts() (requests, authorizations, refreshes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, len(f.authorizeReqs), f.refreshes
}

// browser stands in for the person's browser: it opens the URL and follows the redirects into the
// loopback server, and keeps the page it ends on.
type browser struct {
	pages chan string
}

func (b *browser) open(u string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	b.pages <- string(body)
	return err
}

// lastPage is the page the browser ended on.
func (b *browser) lastPage(t *testing.T) string {
	t.Helper()
	select {
	case p := <-b.pages:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("the browser got no page")
		return ""
	}
}

func (f *fakeProvider) options(t *testing.T) (Options, *browser, *bytes.Buffer) {
	b := &browser{pages: make(chan string, 10)}
	prompt := &bytes.Buffer{}
	return Options{Issuer: f.srv.URL, ClientID: testClientID, ClientSecret: f.secret, HTTPClient: f.srv.Client(),
		CacheDir: filepath.Join(t.TempDir(), "kubectl-tenancy"), OpenBrowser: b.open, Prompt: prompt, Timeout: 10 * time.Second}, b, prompt
}

func cacheFile(o Options) string {
	o, _ = o.withDefaults()
	return cacheOf(o).path
}

func TestSignInIsCachedAndReused(t *testing.T) {
	f := newFakeProvider(t)
	o, b, prompt := f.options(t)
	o.Organization, o.LoginHint = "acme", "owner@acme.example"

	cred, err := Token(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Credential{Email: "owner@acme.example", EmailVerified: true, Org: "acme", Role: "Owner"}, cred,
		cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "IDToken" || p.String() == "Expiry" }, cmp.Ignore())); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if until := time.Until(cred.Expiry); until < 59*time.Minute || until > time.Hour {
		t.Errorf("expiry in %s, want the ID token's hour", until)
	}
	if page := b.lastPage(t); !strings.Contains(page, "Signed in; you can close this tab") {
		t.Errorf("the browser shows %q", page)
	}
	if !strings.Contains(prompt.String(), "Open this URL to sign in: "+f.srv.URL+"/oauth2/authorize?") {
		t.Errorf("prompt %q lacks the sign-in URL", prompt.String())
	}
	req := f.authorizeReqs[0]
	if req.Get("organization") != "acme" || req.Get("login_hint") != "owner@acme.example" || req.Get("scope") != "openid email offline_access" {
		t.Errorf("authorization request %v: want organization, login_hint and the default scopes", req)
	}

	path := cacheFile(o)
	for name, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, st.Mode(), want)
		}
	}

	requests, _, _ := f.counts()
	o.OpenBrowser = func(string) error { t.Error("the cached token was not used: the browser opened"); return nil }
	again, err := Token(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if after, _, _ := f.counts(); after != requests || again.IDToken != cred.IDToken {
		t.Errorf("the second Token made %d requests to the provider and answered another token; want the cached one", after-requests)
	}
}

func TestExpiringTokenIsRefreshed(t *testing.T) {
	f := newFakeProvider(t)
	f.idTokenTTL = 30 * time.Second // less than the minute a cached token must have left
	o, _, _ := f.options(t)
	first, err := Token(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	f.idTokenTTL = time.Hour
	o.OpenBrowser = func(string) error { t.Error("a refresh was due, but the browser opened"); return nil }
	second, err := Token(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, authorizations, refreshes := f.counts(); authorizations != 1 || refreshes != 1 {
		t.Errorf("%d sign-ins and %d refreshes; want 1 and 1", authorizations, refreshes)
	}
	if second.IDToken == first.IDToken || time.Until(second.Expiry) < 59*time.Minute {
		t.Error("the refresh did not answer the new ID token")
	}
	// The rotated refresh token is cached, so that the next refresh uses a live one.
	cached, err := cacheOf(mustDefaults(t, o)).read()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.refreshTokens[cached.RefreshToken] {
		t.Error("the cache holds the refresh token that the refresh rotated away")
	}
}

func TestFailedRefreshSignsInAgain(t *testing.T) {
	f := newFakeProvider(t)
	f.idTokenTTL = 30 * time.Second
	o, _, prompt := f.options(t)
	if _, err := Token(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	f.refuseRefresh, f.idTokenTTL = true, time.Hour
	if _, err := Token(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, authorizations, refreshes := f.counts(); authorizations != 2 || refreshes != 1 {
		t.Errorf("%d sign-ins and %d refreshes; want 2 and 1", authorizations, refreshes)
	}
	if want := "The session could not be refreshed (invalid_grant: the session has ended); signing in again."; !strings.Contains(prompt.String(), want) {
		t.Errorf("prompt %q lacks %q", prompt.String(), want)
	}
}

func TestSignInRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(*fakeProvider)
		err    string
		reason string
	}{
		{name: "wrong state", setup: func(f *fakeProvider) { f.state = "forged" },
			err: "another state than this sign-in sent", reason: "a redirect with another state may be an attacker's code"},
		{name: "wrong nonce", setup: func(f *fakeProvider) { f.nonce = "replayed" },
			err: "nonce is not the one this sign-in sent", reason: "an ID token with another nonce may be replayed"},
		{name: "wrong audience", setup: func(f *fakeProvider) { f.audience = "another-client" },
			err: `expected audience "kubectl.tenancy-system"`, reason: "an ID token for another client is not kubectl's"},
		{name: "access denied", setup: func(f *fakeProvider) {
			f.refuse = url.Values{"error": {"access_denied"}, "error_description": {"you have no active membership in organization acme for this application"}}
		}, err: "sign-in refused by the provider: access_denied: you have no active membership in organization acme for this application",
			reason: "the provider's refusal reaches the person with its reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProvider(t)
			tc.setup(f)
			o, b, _ := f.options(t)
			_, err := Token(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%s: error %v, want one containing %q", tc.reason, err, tc.err)
			}
			if page := b.lastPage(t); !strings.Contains(page, "Sign-in failed") {
				t.Errorf("the browser shows %q, want the failure", page)
			}
			if _, err := os.Stat(cacheFile(o)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused sign-in was cached (%v)", err)
			}
		})
	}
}

func TestConfidentialClient(t *testing.T) {
	f := newFakeProvider(t)
	f.secret = "a-client-secret-value"
	f.idTokenTTL = 30 * time.Second
	o, _, _ := f.options(t)
	if _, err := Token(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := Token(context.Background(), o); err != nil { // a refresh, with HTTP Basic
		t.Fatal(err)
	}
	if _, authorizations, refreshes := f.counts(); authorizations != 1 || refreshes != 1 {
		t.Errorf("%d sign-ins and %d refreshes; want 1 and 1", authorizations, refreshes)
	}
	b, err := os.ReadFile(cacheFile(o))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), f.secret) {
		t.Error("the cache file holds the client secret")
	}
}

func TestLogoutRevokesAndForgets(t *testing.T) {
	f := newFakeProvider(t)
	o, _, _ := f.options(t)
	if _, err := Token(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	cached, err := cacheOf(mustDefaults(t, o)).read()
	if err != nil || cached.RefreshToken == "" {
		t.Fatalf("cache %+v (%v): want a refresh token", cached, err)
	}
	if err := Logout(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cacheFile(o)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cache survived logout (%v)", err)
	}
	if diff := cmp.Diff([]string{cached.RefreshToken}, f.revoked); diff != "" {
		t.Errorf("revoked (-want +got):\n%s", diff)
	}
	if err := Logout(context.Background(), o); err != nil {
		t.Errorf("logging out twice: %v", err)
	}
	if _, err := Token(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, authorizations, _ := f.counts(); authorizations != 2 {
		t.Errorf("%d sign-ins; after logout Token must sign in again", authorizations)
	}
}

func TestLoginSignsInAnew(t *testing.T) {
	f := newFakeProvider(t)
	o, _, _ := f.options(t)
	first, err := Token(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	before, err := cacheOf(mustDefaults(t, o)).read()
	if err != nil {
		t.Fatal(err)
	}
	second, err := Login(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, authorizations, _ := f.counts(); authorizations != 2 || second.IDToken == first.IDToken {
		t.Errorf("%d sign-ins; Login must sign in whatever the cache holds", authorizations)
	}
	if after, _ := cacheOf(mustDefaults(t, o)).read(); after.IDToken != second.IDToken {
		t.Error("Login did not cache its token")
	}
	if diff := cmp.Diff([]string{before.RefreshToken}, f.revoked); diff != "" {
		t.Errorf("revoked (-want +got): the replaced session must end\n%s", diff)
	}
}

func TestSignInTimesOut(t *testing.T) {
	f := newFakeProvider(t)
	o, _, prompt := f.options(t)
	o.OpenBrowser, o.Timeout = nil, 200*time.Millisecond
	_, err := Token(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no sign-in within 200ms") {
		t.Errorf("error %v, want the timeout", err)
	}
	if !strings.Contains(prompt.String(), "Open this URL to sign in: ") {
		t.Errorf("without a browser the URL must be printed; prompt %q", prompt.String())
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		err  string
	}{
		{"no issuer", Options{ClientID: "c"}, "the issuer is required"},
		{"no client", Options{Issuer: "https://auth.example.com"}, "the client ID is required"},
		{"no openid", Options{Issuer: "https://auth.example.com", ClientID: "c", Scopes: []string{"email"}}, "lack openid"},
		{"listen on every interface", Options{Issuer: "https://auth.example.com", ClientID: "c", ListenAddress: ":0"}, "not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Token(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestExecCredential(t *testing.T) {
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := ExecCredential(Credential{IDToken: "eyJ.id.token", Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
		"spec":   map[string]any{"interactive": false},
		"status": map[string]any{"token": "eyJ.id.token", "expirationTimestamp": "2030-01-02T03:04:05Z"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExecCredential (-want +got):\n%s", diff)
	}
}

func TestKubeconfigUser(t *testing.T) {
	args := []string{"get-token", "--issuer=https://auth.example.com", "--client-id=kubectl.tenancy-system"}
	out := KubeconfigUser("acme", args)
	var config clientcmdv1.Config
	if err := yaml.UnmarshalStrict([]byte(out), &config); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	if len(config.AuthInfos) != 1 || config.AuthInfos[0].Name != "acme" || config.AuthInfos[0].AuthInfo.Exec == nil {
		t.Fatalf("users %+v, want one user acme with exec", config.AuthInfos)
	}
	exec := *config.AuthInfos[0].AuthInfo.Exec
	exec.InstallHint = ""
	want := clientcmdv1.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "kubectl-tenancy", Args: args,
		InteractiveMode: clientcmdv1.IfAvailableExecInteractiveMode, ProvideClusterInfo: false}
	if diff := cmp.Diff(want, exec); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
}

func mustDefaults(t *testing.T, o Options) Options {
	t.Helper()
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return o
}
