// Package kubelogin signs a person in to an OpenID Connect provider (authd) from the command line
// and keeps their ID token for kubectl: the authorization code flow with PKCE and a loopback
// redirect (RFC 8252), tokens cached per issuer, client and organization, refreshed with the
// refresh token, and handed to client-go as an ExecCredential. cmd/kubectl-tenancy is its command.
package kubelogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/tenancy-dev/tenancy/internal/loopback"
)

// Options say where and how to sign in, and where to keep the tokens.
type Options struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document names it.
	Issuer string
	// ClientID is the OAuth client kubectl signs in with; kube-apiserver trusts ID tokens whose
	// aud is this client_id.
	ClientID string
	// ClientSecret is empty for a public client, which authenticates with its client_id alone.
	ClientSecret string
	// Scopes default to openid email offline_access.
	Scopes []string
	// Organization, when set, preselects the organization to sign in to (the authorization
	// request's organization parameter).
	Organization string
	// LoginHint is the email address the login page starts with.
	LoginHint string
	// HTTPClient talks to the issuer; give it the issuer's CA when that is not a system root.
	// Nil is a client with a 30 s timeout and the system roots.
	HTTPClient *http.Client
	// CacheDir keeps the tokens as <CacheDir>/<sha256(issuer|client|organization)>.json (mode
	// 0600, directory 0700). Empty keeps nothing: every Token signs in.
	CacheDir string
	// OpenBrowser opens the sign-in URL; nil only prints it.
	OpenBrowser func(url string) error
	// Prompt is where the sign-in URL and notes go (stderr in the command); nil discards them.
	Prompt io.Writer
	// ListenAddress is the loopback address of the redirect URI; default 127.0.0.1:0 (any port).
	ListenAddress string
	// Timeout is how long a sign-in waits for the browser; default 5 minutes.
	Timeout time.Duration
}

// Credential is a valid ID token and what it says about the person.
type Credential struct {
	IDToken       string
	Expiry        time.Time
	Email         string
	EmailVerified bool
	// Org is the organization's name (the org_name claim), Role the person's role there.
	Org  string
	Role string
}

// DefaultScopes are the scopes asked for when Options.Scopes is empty: an ID token with the email
// address, and a refresh token.
var DefaultScopes = []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess}

// minValidity is how long a cached ID token must still be valid to be used as it is: kubectl may
// take a while between reading it and the API server checking it.
const minValidity = time.Minute

// Token returns a valid ID token: the cached one when it has more than a minute left, else one
// refreshed with the cached refresh token, else one from a new sign-in in the browser. Concurrent
// calls for the same issuer, client and organization (parallel kubectl commands) take turns, so
// that only one of them signs in.
func Token(ctx context.Context, o Options) (Credential, error) {
	return token(ctx, o, false)
}

// Login signs in anew in the browser, whatever the cache holds, caches the result and revokes the
// session it replaces.
func Login(ctx context.Context, o Options) (Credential, error) {
	return token(ctx, o, true)
}

func token(ctx context.Context, o Options, fresh bool) (Credential, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Credential{}, err
	}
	c := cacheOf(o)
	unlock, err := c.lock(ctx, func() {
		o.say("Waiting for another kubectl-tenancy that is signing in to the same issuer…\n")
	})
	if err != nil {
		return Credential{}, err
	}
	defer unlock()
	cached, err := c.read()
	if err != nil {
		o.say("Ignoring the token cache: %v\n", err)
	}
	if !fresh {
		if cred, ok := cached.usable(o, time.Now()); ok {
			return cred, nil
		}
	}
	ctx = oidc.ClientContext(ctx, o.HTTPClient)
	p, err := discover(ctx, o)
	if err != nil {
		return Credential{}, err
	}
	var next entry
	var cred Credential
	if !fresh && cached.RefreshToken != "" {
		next, cred, err = p.refresh(ctx, o, cached)
		if err != nil && ctx.Err() != nil {
			return Credential{}, err
		}
		if err != nil {
			o.say("The session could not be refreshed (%v); signing in again.\n", err)
		}
	}
	if fresh || next.IDToken == "" {
		if next, cred, err = p.signIn(ctx, o); err != nil {
			return Credential{}, err
		}
		if fresh && cached.RefreshToken != "" {
			_ = p.revoke(ctx, o, cached.RefreshToken) // the replaced session; it would expire by itself
		}
	}
	if err := c.write(next); err != nil {
		o.say("Warning: the tokens could not be cached, so the next command signs in again: %v\n", err)
	}
	return cred, nil
}

// Logout forgets the cached tokens and revokes the refresh token at the issuer, which ends the
// session there. The cache is gone even when revoking fails; the error then says so.
func Logout(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	c := cacheOf(o)
	unlock, err := c.lock(ctx, func() {})
	if err != nil {
		return err
	}
	defer unlock()
	cached, _ := c.read() // an unreadable cache is removed all the same
	if err := c.remove(); err != nil {
		return err
	}
	if cached.RefreshToken == "" {
		return nil
	}
	ctx = oidc.ClientContext(ctx, o.HTTPClient)
	p, err := discover(ctx, o)
	if err != nil {
		return fmt.Errorf("forgot the cached tokens, but could not end the session at the issuer: %w", err)
	}
	if err := p.revoke(ctx, o, cached.RefreshToken); err != nil {
		return fmt.Errorf("forgot the cached tokens, but could not end the session at the issuer: %w", err)
	}
	return nil
}

// withDefaults checks o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	o.Issuer = strings.TrimSuffix(o.Issuer, "/")
	switch {
	case o.Issuer == "":
		return o, errors.New("the issuer is required")
	case o.ClientID == "":
		return o, errors.New("the client ID is required")
	}
	if len(o.Scopes) == 0 {
		o.Scopes = DefaultScopes
	}
	if !slices.Contains(o.Scopes, oidc.ScopeOpenID) {
		return o, fmt.Errorf("the scopes %q lack openid, without which there is no ID token", o.Scopes)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Prompt == nil {
		o.Prompt = io.Discard
	}
	if o.ListenAddress == "" {
		o.ListenAddress = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(o.ListenAddress)
	if err != nil || !loopback.Host(host) {
		return o, fmt.Errorf("the listen address %q is not a loopback address such as 127.0.0.1:0", o.ListenAddress)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	return o, nil
}

// say writes a line for the person to o.Prompt; there is nothing to do when that fails.
func (o Options) say(format string, args ...any) {
	_, _ = fmt.Fprintf(o.Prompt, format, args...)
}

// provider is the issuer as its discovery document describes it.
type provider struct {
	issuer        string
	endpoint      oauth2.Endpoint
	revocationURL string
	verifier      *oidc.IDTokenVerifier
}

// discover reads the issuer's discovery document; ctx carries the HTTP client.
func discover(ctx context.Context, o Options) (*provider, error) {
	p, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("reading the discovery document of %s: %w", o.Issuer, err)
	}
	var extra struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	if err := p.Claims(&extra); err != nil {
		return nil, fmt.Errorf("reading the discovery document of %s: %w", o.Issuer, err)
	}
	endpoint := p.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	if o.ClientSecret == "" {
		endpoint.AuthStyle = oauth2.AuthStyleInParams // a public client sends its client_id alone
	}
	return &provider{issuer: o.Issuer, endpoint: endpoint, revocationURL: extra.RevocationEndpoint,
		verifier: p.VerifierContext(ctx, &oidc.Config{ClientID: o.ClientID})}, nil
}

func (p *provider) config(o Options, redirectURL string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, Endpoint: p.endpoint, RedirectURL: redirectURL, Scopes: o.Scopes}
}

// claims are the ID token's claims that matter here.
type claims struct {
	jwt.RegisteredClaims
	Nonce         string `json:"nonce"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	OrgName       string `json:"org_name"`
	Role          string `json:"role"`
}

func (c claims) credential(raw string) Credential {
	cred := Credential{IDToken: raw, Email: c.Email, EmailVerified: c.EmailVerified, Org: c.OrgName, Role: c.Role}
	if c.ExpiresAt != nil {
		cred.Expiry = c.ExpiresAt.Time
	}
	return cred
}

// verify checks an ID token from the token endpoint: signature, issuer, audience and expiry.
func (p *provider) verify(ctx context.Context, raw string) (claims, error) {
	var c claims
	t, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return c, fmt.Errorf("verifying the ID token from %s: %w", p.issuer, err)
	}
	if err := t.Claims(&c); err != nil {
		return c, fmt.Errorf("reading the ID token's claims: %w", err)
	}
	return c, nil
}

// idTokenOf is the ID token of a token endpoint answer.
func idTokenOf(t *oauth2.Token) (string, error) {
	raw, _ := t.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("the token endpoint answered without an ID token")
	}
	return raw, nil
}

// refresh trades the cached refresh token for new tokens. The new ID token must be about the same
// person (OpenID Connect Core section 12.2).
func (p *provider) refresh(ctx context.Context, o Options, cached entry) (entry, Credential, error) {
	t, err := p.config(o, "").TokenSource(ctx, &oauth2.Token{RefreshToken: cached.RefreshToken}).Token()
	if err != nil {
		return entry{}, Credential{}, describeTokenError(err)
	}
	raw, err := idTokenOf(t)
	if err != nil {
		return entry{}, Credential{}, err
	}
	c, err := p.verify(ctx, raw)
	if err != nil {
		return entry{}, Credential{}, err
	}
	if old, err := parseUnverified(cached.IDToken); err == nil && old.Subject != c.Subject {
		return entry{}, Credential{}, errors.New("the refreshed ID token is about another person than the cached one")
	}
	next := entry{Issuer: o.Issuer, ClientID: o.ClientID, Organization: o.Organization, IDToken: raw, RefreshToken: t.RefreshToken}
	if next.RefreshToken == "" {
		next.RefreshToken = cached.RefreshToken
	}
	return next, c.credential(raw), nil
}

// describeTokenError turns a token endpoint refusal into "invalid_grant: <description>".
func describeTokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
		}
		return errors.New(re.ErrorCode)
	}
	return err
}

// revoke ends the refresh token's session (RFC 7009), if the issuer has a revocation endpoint.
func (p *provider) revoke(ctx context.Context, o Options, refreshToken string) error {
	if p.revocationURL == "" {
		return nil
	}
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}}
	if o.ClientSecret == "" {
		form.Set("client_id", o.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.revocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if o.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	}
	resp, err := o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("revoking the refresh token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("revoking the refresh token: %s answered %s: %s", p.revocationURL, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// parseUnverified reads the claims of an ID token this package verified before it cached it.
func parseUnverified(raw string) (claims, error) {
	var c claims
	_, _, err := jwt.NewParser().ParseUnverified(raw, &c)
	return c, err
}
