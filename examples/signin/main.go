// Command signin is a web application that signs people in through authd with OpenID Connect,
// written only with github.com/coreos/go-oidc and golang.org/x/oauth2, as any application would
// be. It is the OAuthClient demo-app.acme of `make dev` (config/samples):
//
//	set -a; source .dev/env; set +a
//	export SIGNIN_CLIENT_SECRET=$(kubectl get secret -n acme demo-app-oauth-client -o jsonpath='{.data.clientSecret}' | base64 -d)
//	go run ./examples/signin
//
// then open http://127.0.0.1:5556 and sign in as a member of acme.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "signin:", err)
		os.Exit(1)
	}
}

func run() error {
	issuer := flag.String("issuer", os.Getenv("TENANCY_AUTHD_URL"), "authd's issuer URL (default $TENANCY_AUTHD_URL)")
	clientID := flag.String("client-id", "demo-app.acme", "the OAuthClient's client_id (<name>.<namespace>)")
	caFile := flag.String("ca-file", os.Getenv("TENANCY_CA_FILE"), "PEM CA that signed authd's certificate, besides the system roots (default $TENANCY_CA_FILE)")
	listen := flag.String("listen", "127.0.0.1:5556", "address of this application; the redirect URI is http://<listen>/callback")
	flag.Parse()
	secret := os.Getenv("SIGNIN_CLIENT_SECRET")
	switch {
	case *issuer == "":
		return errors.New("--issuer is required (or TENANCY_AUTHD_URL)")
	case secret == "":
		return errors.New("SIGNIN_CLIENT_SECRET is required: the clientSecret of the OAuthClient's Secret")
	}
	httpClient, err := clientTrusting(*caFile)
	if err != nil {
		return err
	}
	ctx := oidc.ClientContext(context.Background(), httpClient)
	provider, err := oidc.NewProvider(ctx, *issuer)
	if err != nil {
		return fmt.Errorf("discovery at %s: %w", *issuer, err)
	}
	a := &app{provider: provider, httpClient: httpClient, flows: map[string]flow{},
		config: oauth2.Config{ClientID: *clientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
			RedirectURL: "http://" + *listen + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /callback", a.callback)
	log.Printf("open http://%s (client %s, issuer %s)", *listen, *clientID, *issuer)
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return server.ListenAndServe()
}

// clientTrusting is an HTTP client that trusts the system roots and the PEM file caFile.
func clientTrusting(caFile string) (*http.Client, error) {
	if caFile == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file: %s holds no PEM certificate", caFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}

// flow is a sign-in under way: what the callback must find again.
type flow struct {
	verifier, nonce string
	started         time.Time
}

type app struct {
	provider   *oidc.Provider
	httpClient *http.Client
	config     oauth2.Config

	mu    sync.Mutex
	flows map[string]flow // by state
}

var page = template.Must(template.New("page").Parse(`<!doctype html><title>Demo app</title>
{{if .Email}}<p id="signed-in">Signed in as <strong>{{.Email}}</strong> ({{.Role}} of {{.Org}}).</p>
<p><a href="{{.Logout}}">Log out</a></p>
{{else}}<p><a id="sign-in" href="/login">Sign in with Tenancy</a></p>{{end}}`))

func (a *app) home(w http.ResponseWriter, _ *http.Request) {
	_ = page.Execute(w, map[string]string{})
}

// login starts the code flow with PKCE, state and nonce.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	state, nonce := random(), random()
	verifier := oauth2.GenerateVerifier()
	a.mu.Lock()
	for s, f := range a.flows { // sign-ins never finished
		if time.Since(f.started) > 10*time.Minute {
			delete(a.flows, s)
		}
	}
	a.flows[state] = flow{verifier: verifier, nonce: nonce, started: time.Now()}
	a.mu.Unlock()
	http.Redirect(w, r, a.config.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// callback exchanges the code, verifies the ID token and shows who signed in.
func (a *app) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a.mu.Lock()
	f, ok := a.flows[q.Get("state")]
	delete(a.flows, q.Get("state"))
	a.mu.Unlock()
	switch {
	case q.Get("error") != "":
		http.Error(w, "sign-in refused: "+q.Get("error")+": "+q.Get("error_description"), http.StatusForbidden)
		return
	case !ok || time.Since(f.started) > 10*time.Minute:
		http.Error(w, "unknown or expired sign-in: start again at /login", http.StatusBadRequest)
		return
	}
	ctx := oidc.ClientContext(r.Context(), a.httpClient)
	token, err := a.config.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		http.Error(w, "exchanging the code: "+err.Error(), http.StatusBadGateway)
		return
	}
	raw, _ := token.Extra("id_token").(string)
	idToken, err := a.provider.Verifier(&oidc.Config{ClientID: a.config.ClientID}).Verify(ctx, raw)
	if err == nil && idToken.Nonce != f.nonce {
		err = errors.New("the nonce differs")
	}
	if err == nil {
		err = idToken.VerifyAccessToken(token.AccessToken)
	}
	if err != nil {
		http.Error(w, "ID token: "+err.Error(), http.StatusBadGateway)
		return
	}
	var claims struct {
		Email   string `json:"email"`
		OrgName string `json:"org_name"`
		Role    string `json:"role"`
	}
	if err := idToken.Claims(&claims); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	var endSession struct {
		URL string `json:"end_session_endpoint"`
	}
	_ = a.provider.Claims(&endSession)
	logout := endSession.URL + "?" + url.Values{"id_token_hint": {raw}}.Encode()
	_ = page.Execute(w, map[string]string{"Email": claims.Email, "Org": claims.OrgName, "Role": claims.Role, "Logout": logout})
}

func random() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
