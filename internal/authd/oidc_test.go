package authd_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// The OpenID Connect provider, proven with two relying-party libraries nobody here wrote
// (github.com/coreos/go-oidc with golang.org/x/oauth2, and github.com/zitadel/oidc), and the
// attacks on the code flow.

const appRedirect = "http://127.0.0.1:5556/callback"

// registeredClient is an OAuthClient once Ready: its client_id and (confidential) secret.
type registeredClient struct {
	ID, Secret string
}

// oauthClientIn creates an OAuthClient in namespace and waits for it to be Ready.
func oauthClientIn(ctx context.Context, namespace string, spec tenancyv1.OAuthClientSpec) registeredClient {
	GinkgoHelper()
	if spec.DisplayName == "" {
		spec.DisplayName = "Demo app"
	}
	if spec.RedirectURIs == nil {
		spec.RedirectURIs = []string{appRedirect}
	}
	c := &tenancyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: uniqueName("app")}, Spec: spec}
	Expect(kube.Create(ctx, c)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { _ = kube.Delete(ctx, c) })
	eventuallyReady(ctx, c)
	reg := registeredClient{ID: c.Status.ClientID}
	Expect(reg.ID).To(Equal(c.Name + "." + namespace))
	if !spec.Public {
		secret := &corev1.Secret{}
		Expect(kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: c.Status.SecretName}, secret)).To(Succeed())
		reg.Secret = string(secret.Data[tenancyv1.OAuthClientSecretKey])
		Expect(reg.Secret).NotTo(BeEmpty())
	}
	return reg
}

// browser is a headless browser of the authd at base: cookies, and redirects followed inside
// authd only, so that the redirect to the application is where it stops.
type browser struct {
	*http.Client
	base string
}

func newBrowser() browser { return newBrowserAt(authdURL, http.DefaultTransport) }

func newBrowserAt(base string, transport http.RoundTripper) browser {
	jar, _ := cookiejar.New(nil)
	return browser{&http.Client{Jar: jar, Transport: transport, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if !strings.HasPrefix(req.URL.String(), base) {
				return http.ErrUseLastResponse
			}
			return nil
		}}, base}
}

// page is what the browser was last shown, or where authd sent it outside itself.
type page struct {
	Status   int
	Body     string
	URL      *url.URL // the page's address
	Location *url.URL // a redirect that left authd
}

func (b browser) open(method, target string, form url.Values) page {
	GinkgoHelper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	Expect(err).NotTo(HaveOccurred())
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := page{Status: resp.StatusCode, Body: string(raw), URL: resp.Request.URL}
	if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
		p.Location, err = resp.Location()
		Expect(err).NotTo(HaveOccurred())
	}
	return p
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// formOf reads the hidden fields of the page's form, as a browser would submit them.
func formOf(p page) url.Values {
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(p.Body, -1) {
		form.Add(m[1], htmlUnescape(m[2]))
	}
	return form
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

// signIn follows authURL in b: the login page when there is no session (logging in as email),
// then whatever authd answers. It returns the last page or the redirect that left authd.
func (b browser) signIn(authURL, email string) page {
	GinkgoHelper()
	p := b.open(http.MethodGet, authURL, nil)
	if p.URL.Path == "/login" && p.Location == nil {
		form := formOf(p)
		form.Set("email", email)
		form.Set("password", password)
		p = b.open(http.MethodPost, b.base+"/login", form)
	}
	return p
}

// codeFrom checks that p went to the application's redirect URI with a code and state.
func codeFrom(p page, state string) string {
	GinkgoHelper()
	Expect(p.Location).NotTo(BeNil(), "authd answered %d at %s: %s", p.Status, p.URL, p.Body)
	Expect(p.Location.Scheme + "://" + p.Location.Host + p.Location.Path).To(Equal(appRedirect))
	q := p.Location.Query()
	Expect(q.Get("error")).To(BeEmpty(), q.Get("error_description"))
	Expect(q.Get("state")).To(Equal(state))
	Expect(q.Get("iss")).To(Equal(authdURL))
	Expect(q.Get("code")).NotTo(BeEmpty())
	return q.Get("code")
}

// errorFrom checks that p went to the redirect URI with an error, and returns it.
func errorFrom(p page) string {
	GinkgoHelper()
	Expect(p.Location).NotTo(BeNil(), "authd answered %d at %s: %s", p.Status, p.URL, p.Body)
	Expect(p.Location.Query().Get("code")).To(BeEmpty())
	return p.Location.Query().Get("error")
}

// idTokenClaims decodes a JWT's claims without checking them (the libraries check them).
func jwtClaims(token string) map[string]any {
	GinkgoHelper()
	parts := strings.Split(token, ".")
	Expect(parts).To(HaveLen(3))
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	claims := map[string]any{}
	Expect(json.Unmarshal(raw, &claims)).To(Succeed())
	return claims
}

var _ = Describe("OpenID Connect provider", func() {
	var (
		org, other *tenancyv1.Organization
		email      string
	)
	BeforeEach(func(ctx SpecContext) {
		org, other = organization(ctx, "oidc"), organization(ctx, "oidc-other")
		email = uniqueName("oidc") + "@example.com"
		activeMember(ctx, org, email, tenancyv1.RoleAdmin)
	})

	It("signs a person in with go-oidc and x/oauth2: discovery, PKCE, ID token, userinfo, refresh and logout", func(ctx SpecContext) {
		app := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true,
			GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
			Scopes:     []tenancyv1.OAuthScope{"openid", "profile", "email", "offline_access"}})
		provider, err := oidc.NewProvider(ctx, authdURL)
		Expect(err).NotTo(HaveOccurred())
		conf := oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, Endpoint: provider.Endpoint(), RedirectURL: appRedirect,
			Scopes: []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}}
		verifier := oauth2.GenerateVerifier()
		b := newBrowser()
		code := codeFrom(b.signIn(conf.AuthCodeURL("st-1", oidc.Nonce("n-1"), oauth2.S256ChallengeOption(verifier)), email), "st-1")

		tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		Expect(err).NotTo(HaveOccurred())
		rawID, _ := tok.Extra("id_token").(string)
		idToken, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, rawID)
		Expect(err).NotTo(HaveOccurred())
		Expect(idToken.Nonce).To(Equal("n-1"))
		Expect(idToken.VerifyAccessToken(tok.AccessToken)).To(Succeed())
		var claims struct {
			Email         string   `json:"email"`
			EmailVerified bool     `json:"email_verified"`
			Org           string   `json:"org"`
			OrgName       string   `json:"org_name"`
			Role          string   `json:"role"`
			AuthTime      int64    `json:"auth_time"`
			AMR           []string `json:"amr"`
		}
		Expect(idToken.Claims(&claims)).To(Succeed())
		Expect(claims.Email).To(Equal(email))
		Expect(claims.OrgName).To(Equal(org.Name))
		Expect(claims.Org).To(Equal(orgID(ctx, org)))
		Expect(claims.Role).To(Equal("Admin"))
		Expect(claims.AMR).To(Equal([]string{"pwd"}))
		Expect(time.Since(time.Unix(claims.AuthTime, 0))).To(BeNumerically("<", time.Minute))
		Expect(tok.RefreshToken).NotTo(BeEmpty())

		info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Subject).To(Equal(idToken.Subject))
		Expect(info.Email).To(Equal(email))

		// The access token is the application's, not a session of authd: the self-service API
		// refuses it.
		Expect(get("/auth/me", "Authorization", "Bearer "+tok.AccessToken).StatusCode).To(Equal(http.StatusUnauthorized))
		access := jwtClaims(tok.AccessToken)
		Expect(access["client_id"]).To(Equal(app.ID))
		Expect(access["scope"]).To(HavePrefix("openid email profile offline_access "), "the granted scopes, then the role's permissions")

		// Refresh: rotation, a new ID token with the same auth_time.
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		refreshed, err := conf.TokenSource(ctx, &expired).Token()
		Expect(err).NotTo(HaveOccurred())
		Expect(refreshed.RefreshToken).NotTo(Equal(tok.RefreshToken))
		again, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, refreshed.Extra("id_token").(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Subject).To(Equal(idToken.Subject))
		var againClaims struct {
			AuthTime int64 `json:"auth_time"`
		}
		Expect(again.Claims(&againClaims)).To(Succeed())
		Expect(againClaims.AuthTime).To(Equal(claims.AuthTime))

		// Another client cannot use this client's refresh token, nor can authd's own refresh.
		stranger := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true,
			GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
			Scopes:     []tenancyv1.OAuthScope{"openid", "offline_access"}})
		r := postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed.RefreshToken}}, stranger.ID, stranger.Secret)
		Expect(r.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(r.Body["error"]).To(Equal("invalid_grant"))
		Expect(postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": refreshed.RefreshToken}).StatusCode).To(Equal(http.StatusBadRequest))

		// RP-initiated logout with the ID token: the browser's session and the client's end.
		var endSession struct {
			URL string `json:"end_session_endpoint"`
		}
		Expect(provider.Claims(&endSession)).To(Succeed())
		logout := b.open(http.MethodGet, endSession.URL+"?"+url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {appRedirect}, "state": {"bye"}}.Encode(), nil)
		Expect(logout.Status).To(Equal(http.StatusBadRequest), "the post-logout URI is not registered")
		logout = b.open(http.MethodGet, endSession.URL+"?"+url.Values{"id_token_hint": {rawID}}.Encode(), nil)
		Expect(logout.Status).To(Equal(http.StatusOK))
		Expect(logout.Body).To(ContainSubstring("logged out"))
		_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
		Expect(err).To(HaveOccurred())
		Expect(b.open(http.MethodGet, conf.AuthCodeURL("st-2", oauth2.S256ChallengeOption(verifier)), nil).URL.Path).To(Equal("/login"))
	})

	It("signs a person in with zitadel/oidc as a public client, and ends the session at its post-logout URI", func(ctx SpecContext) {
		app := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true, Public: true,
			PostLogoutRedirectURIs: []string{"http://127.0.0.1:5556/bye"},
			GrantTypes:             []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
			Scopes:                 []tenancyv1.OAuthScope{"openid", "email", "offline_access"}})
		// A native app listens on the port it got (RFC 8252): any loopback port matches.
		redirect := "http://127.0.0.1:40123/callback"
		party, err := rp.NewRelyingPartyOIDC(ctx, authdURL, app.ID, "", redirect, []string{"openid", "email", "offline_access"},
			rp.WithSigningAlgsFromDiscovery(), rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return "zn-1" })))
		Expect(err).NotTo(HaveOccurred())
		verifier := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("v", 40)))
		challenge := zoidc.NewSHACodeChallenge(verifier)
		authURL := rp.AuthURL("zs-1", party, rp.WithCodeChallenge(challenge), rp.AuthURLOpt(rp.WithURLParam("nonce", "zn-1")))
		p := newBrowser().signIn(authURL, email)
		Expect(p.Location).NotTo(BeNil(), p.Body)
		Expect(p.Location.Host).To(Equal("127.0.0.1:40123"))
		code := p.Location.Query().Get("code")

		tokens, err := rp.CodeExchange[*zoidc.IDTokenClaims](ctx, code, party, rp.WithCodeVerifier(verifier))
		Expect(err).NotTo(HaveOccurred())
		Expect(tokens.IDTokenClaims.Subject).NotTo(BeEmpty())
		Expect(tokens.IDTokenClaims.Email).To(Equal(email))
		Expect(tokens.IDTokenClaims.Claims["org_name"]).To(Equal(org.Name))

		info, err := rp.Userinfo[*zoidc.UserInfo](ctx, tokens.AccessToken, "Bearer", tokens.IDTokenClaims.Subject, party)
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Email).To(Equal(email))

		refreshed, err := rp.RefreshTokens[*zoidc.IDTokenClaims](ctx, party, tokens.RefreshToken, "", "")
		Expect(err).NotTo(HaveOccurred())
		Expect(refreshed.IDTokenClaims.Subject).To(Equal(tokens.IDTokenClaims.Subject))

		after, err := rp.EndSession(ctx, party, tokens.IDToken, "http://127.0.0.1:5556/bye", "zs-2", "", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(after).NotTo(BeNil())
		Expect(after.Query().Get("state")).To(Equal("zs-2"))
		_, err = rp.RefreshTokens[*zoidc.IDTokenClaims](ctx, party, refreshed.RefreshToken, "", "")
		Expect(err).To(HaveOccurred(), "logout ends the client's session")
	})

	Describe("refuses", func() {
		var app registeredClient
		var verifier string
		authURL := func(clientID, state string, extra url.Values) string {
			q := url.Values{"client_id": {clientID}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid email"},
				"state": {state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
			for k, v := range extra {
				q[k] = v
			}
			return authdURL + "/oauth2/authorize?" + q.Encode()
		}
		exchange := func(c registeredClient, code, codeVerifier, redirect string) response {
			return postForm("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {redirect}, "code_verifier": {codeVerifier}}, c.ID, c.Secret)
		}
		BeforeEach(func(ctx SpecContext) {
			app = oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true,
				GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
				Scopes:     []tenancyv1.OAuthScope{"openid", "email", "offline_access"}})
			verifier = oauth2.GenerateVerifier()
		})

		It("an unregistered redirect URI, without sending anything to it", func() {
			p := newBrowser().open(http.MethodGet, authURL(app.ID, "s", url.Values{"redirect_uri": {"https://evil.example/cb"}}), nil)
			Expect(p.Status).To(Equal(http.StatusBadRequest))
			Expect(p.Location).To(BeNil())
			p = newBrowser().open(http.MethodGet, authURL("nobody.nowhere", "s", nil), nil)
			Expect(p.Status).To(Equal(http.StatusBadRequest))
			Expect(p.Location).To(BeNil())
		})

		It("a reused code, and revokes what its first exchange issued", func() {
			code := codeFrom(newBrowser().signIn(authURL(app.ID, "s1", url.Values{"scope": {"openid offline_access"}}), email), "s1")
			first := exchange(app, code, verifier, appRedirect)
			Expect(first.StatusCode).To(Equal(http.StatusOK), first.Raw)
			second := exchange(app, code, verifier, appRedirect)
			Expect(second.StatusCode).To(Equal(http.StatusBadRequest))
			Expect(second.Body["error"]).To(Equal("invalid_grant"))
			r := postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Body["refresh_token"].(string)}}, app.ID, app.Secret)
			Expect(r.Body["error"]).To(Equal("invalid_grant"), "the first exchange's session is revoked")
		})

		It("a code presented by another client, a wrong or missing verifier, another redirect URI", func(ctx SpecContext) {
			stranger := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true})
			code := codeFrom(newBrowser().signIn(authURL(app.ID, "s", nil), email), "s")
			for _, r := range []response{
				exchange(stranger, code, verifier, appRedirect),
				exchange(app, code, verifier, "http://127.0.0.1:5557/callback"),
			} {
				Expect(r.StatusCode).To(Equal(http.StatusBadRequest))
				Expect(r.Body["error"]).To(Equal("invalid_grant"))
			}
			code = codeFrom(newBrowser().signIn(authURL(app.ID, "s", nil), email), "s")
			r := exchange(app, code, oauth2.GenerateVerifier(), appRedirect)
			Expect(r.Body["error"]).To(Equal("invalid_grant"))
			Expect(exchange(app, code, verifier, appRedirect).Body["error"]).To(Equal("invalid_grant"), "a refused code is spent")
			code = codeFrom(newBrowser().signIn(authURL(app.ID, "s", nil), email), "s")
			Expect(exchange(app, code, "", appRedirect).Body["error"]).To(Equal("invalid_grant"))
			r = exchange(registeredClient{ID: app.ID, Secret: "tcs_wrong"}, "x", verifier, appRedirect)
			Expect(r.StatusCode).To(Equal(http.StatusUnauthorized))
			Expect(r.Body["error"]).To(Equal("invalid_client"))
		})

		It("a public client without PKCE, and prompt=none without a session; an organization's client gets no redirect from strangers", func(ctx SpecContext) {
			public := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true, Public: true})
			noPKCE := authURL(public.ID, "s", url.Values{"code_challenge": nil, "code_challenge_method": nil})
			b := newBrowser()
			codeFrom(b.signIn(authURL(app.ID, "s", nil), email), "s")
			Expect(errorFrom(b.open(http.MethodGet, noPKCE, nil))).To(Equal("invalid_request"), "to a member of its organization")
			p := b.open(http.MethodGet, authURL(app.ID, "s", url.Values{"prompt": {"none"}, "max_age": {"0"}}), nil)
			Expect(errorFrom(p)).To(Equal("login_required"))
			Expect(p.Location.Query().Get("state")).To(Equal("s"))

			// Without a session of one of its members, an organization's client (whose redirect
			// URIs any of its Admins registered) gets an error page, not a redirect.
			for _, stranger := range []page{newBrowser().open(http.MethodGet, noPKCE, nil),
				newBrowser().open(http.MethodGet, authURL(app.ID, "s", url.Values{"prompt": {"none"}}), nil)} {
				Expect(stranger.Status).To(Equal(http.StatusBadRequest))
				Expect(stranger.Location).To(BeNil())
			}
			platform := oauthClientIn(ctx, operatorNamespace, tenancyv1.OAuthClientSpec{FirstParty: true})
			Expect(errorFrom(newBrowser().open(http.MethodGet, authURL(platform.ID, "s", url.Values{"prompt": {"none"}}), nil))).
				To(Equal("login_required"), "a platform-wide client's URIs are a platform admin's")
		})

		It("a session older than max_age, or any session with prompt=login: the person logs in again", func() {
			b := newBrowser()
			codeFrom(b.signIn(authURL(app.ID, "s", nil), email), "s")
			codeFrom(b.open(http.MethodGet, authURL(app.ID, "s", nil), nil), "s") // the session suffices
			for _, extra := range []url.Values{{"prompt": {"login"}}, {"max_age": {"0"}}} {
				p := b.open(http.MethodGet, authURL(app.ID, "s", extra), nil)
				Expect(p.URL.Path).To(Equal("/login"))
				next, err := url.Parse(formOf(p).Get("next"))
				Expect(err).NotTo(HaveOccurred())
				Expect(next.Query().Has("prompt") || next.Query().Has("max_age")).To(BeFalse(), "the login it asks for meets it")
				Expect(p.Body).NotTo(ContainSubstring(`value="` + email + `"`))
			}
			p := b.open(http.MethodGet, authURL(app.ID, "s", url.Values{"prompt": {"login"}, "login_hint": {email}}), nil)
			Expect(p.Body).To(ContainSubstring(`value="`+email+`"`), "login_hint fills the address")
		})

		It("a client of one organization to a member of another only", func(ctx SpecContext) {
			outsider := uniqueName("outsider") + "@example.com"
			activeMember(ctx, other, outsider, tenancyv1.RoleOwner)
			p := newBrowser().signIn(authURL(app.ID, "s", nil), outsider)
			Expect(p.Location).To(BeNil(), "nor is a stranger sent to its redirect URI")
			Expect(p.Status).To(Equal(http.StatusBadRequest))
			Expect(p.Body).To(ContainSubstring("access_denied"))
		})

		It("an ID token of one request to a party that expects another nonce (replay)", func(ctx SpecContext) {
			code := codeFrom(newBrowser().signIn(authURL(app.ID, "s", url.Values{"nonce": {"first"}}), email), "s")
			r := exchange(app, code, verifier, appRedirect)
			Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
			rawID := r.Body["id_token"].(string)
			Expect(jwtClaims(rawID)["nonce"]).To(Equal("first"))
			party, err := rp.NewRelyingPartyOIDC(ctx, authdURL, app.ID, app.Secret, appRedirect, []string{"openid"},
				rp.WithSigningAlgsFromDiscovery(), rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return "second" })))
			Expect(err).NotTo(HaveOccurred())
			_, err = rp.VerifyIDToken[*zoidc.IDTokenClaims](ctx, rawID, party.IDTokenVerifier())
			Expect(err).To(MatchError(ContainSubstring("nonce")))
		})
	})

	It("asks a person in several organizations which one, and never mixes two in a token", func(ctx SpecContext) {
		activeMember(ctx, other, email, tenancyv1.RoleViewer)
		platform := oauthClientIn(ctx, operatorNamespace, tenancyv1.OAuthClientSpec{FirstParty: true})
		verifier := oauth2.GenerateVerifier()
		q := url.Values{"client_id": {platform.ID}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid"},
			"state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
		b := newBrowser()
		chooser := b.signIn(authdURL+"/oauth2/authorize?"+q.Encode(), email)
		Expect(chooser.Status).To(Equal(http.StatusOK))
		Expect(chooser.Body).To(ContainSubstring(org.Name))
		Expect(chooser.Body).To(ContainSubstring(other.Name))
		form := formOf(chooser)
		form.Set("chosen_organization", other.Name)
		form.Set("consent", "allow")
		code := codeFrom(b.open(http.MethodPost, authdURL+"/oauth2/authorize", form), "s")
		r := postForm("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect},
			"code_verifier": {verifier}}, platform.ID, platform.Secret)
		Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
		id := jwtClaims(r.Body["id_token"].(string))
		Expect(id["org_name"]).To(Equal(other.Name))
		Expect(id["role"]).To(Equal("Viewer"))
		Expect(jwtClaims(r.Body["access_token"].(string))["org"]).To(Equal(orgID(ctx, other)))

		// A forged choice without the session's CSRF token is not a choice.
		form.Del("csrf_token")
		Expect(b.open(http.MethodPost, authdURL+"/oauth2/authorize", form).Status).To(Equal(http.StatusOK))
	})

	It("asks for consent for an application that is not first-party, remembers it, and forgets it when revoked", func(ctx SpecContext) {
		third := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{DisplayName: "Third Party Reports",
			GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
			Scopes:     []tenancyv1.OAuthScope{"openid", "email", "offline_access"}})
		verifier := oauth2.GenerateVerifier()
		q := url.Values{"client_id": {third.ID}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid email offline_access"},
			"state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
		authURL := authdURL + "/oauth2/authorize?" + q.Encode()
		b := newBrowser()
		consent := b.signIn(authURL, email)
		Expect(consent.Status).To(Equal(http.StatusOK))
		Expect(consent.Body).To(ContainSubstring("Third Party Reports"))
		Expect(consent.Body).To(ContainSubstring("see your email address"))
		deny := formOf(consent)
		deny.Set("consent", "deny")
		Expect(errorFrom(b.open(http.MethodPost, authdURL+"/oauth2/authorize", deny))).To(Equal("access_denied"))

		noneURL := authURL + "&prompt=none"
		Expect(errorFrom(b.open(http.MethodGet, noneURL, nil))).To(Equal("consent_required"))
		allow := formOf(b.open(http.MethodGet, authURL, nil))
		allow.Set("consent", "allow")
		code := codeFrom(b.open(http.MethodPost, authdURL+"/oauth2/authorize", allow), "s")
		r := postForm("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect},
			"code_verifier": {verifier}}, third.ID, third.Secret)
		Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
		codeFrom(b.open(http.MethodGet, noneURL, nil), "s") // remembered

		account := b.open(http.MethodGet, authdURL+"/account", nil)
		Expect(account.Body).To(ContainSubstring("Third Party Reports"))
		revoke := url.Values{"csrf_token": {formOf(account).Get("csrf_token")}}
		revoked := b.open(http.MethodPost, authdURL+"/account/apps/"+url.PathEscape(third.ID)+"/revoke", revoke)
		Expect(revoked.URL.Path).To(Equal("/account"))
		Expect(revoked.Body).NotTo(ContainSubstring("Third Party Reports"))
		Expect(errorFrom(b.open(http.MethodGet, noneURL, nil))).To(Equal("consent_required"))
		r = postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Body["refresh_token"].(string)}}, third.ID, third.Secret)
		Expect(r.Body["error"]).To(Equal("invalid_grant"), "revoking the consent ends the application's sessions")
	})

	It("exchanges a person's token for a service, narrower in audience, project and scope (RFC 8693)", func(ctx SpecContext) {
		gateway := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true,
			GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantTokenExchange}})
		billing := oauthClientIn(ctx, org.Name, tenancyv1.OAuthClientSpec{FirstParty: true})
		foreign := oauthClientIn(ctx, other.Name, tenancyv1.OAuthClientSpec{FirstParty: true,
			GrantTypes: []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantTokenExchange}})
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: "ledger"}}
		Expect(kube.Create(ctx, project)).To(Succeed())
		eventuallyReady(ctx, project)
		subject := login(email, org.Name)["access_token"].(string)
		exchange := func(c registeredClient, form url.Values) response {
			form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
			form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")
			if !form.Has("subject_token") {
				form.Set("subject_token", subject)
			}
			return postForm("/oauth2/token", form, c.ID, c.Secret)
		}

		r := exchange(gateway, url.Values{"audience": {billing.ID}, "project": {"ledger"}, "scope": {"projects:read data:read"}})
		Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
		Expect(r.Body["issued_token_type"]).To(Equal("urn:ietf:params:oauth:token-type:access_token"))
		narrowed := jwtClaims(r.Body["access_token"].(string))
		Expect(narrowed["aud"]).To(ConsistOf(billing.ID))
		Expect(narrowed["act"]).To(HaveKeyWithValue("sub", gateway.ID))
		Expect(narrowed["sub"]).To(Equal(jwtClaims(subject)["sub"]))
		Expect(narrowed["project"]).To(Equal(projectID(ctx, project)))
		Expect(narrowed["scope"]).To(Equal("projects:read data:read"))
		Expect(narrowed["exp"]).To(BeNumerically("<=", jwtClaims(subject)["exp"]), "never outlives the subject token")

		for name, c := range map[string]struct {
			client registeredClient
			form   url.Values
			code   string
		}{
			"a scope the person does not hold":             {gateway, url.Values{"scope": {"owners:write"}}, "invalid_scope"},
			"an audience that is no client":                {gateway, url.Values{"audience": {"https://elsewhere.example"}}, "invalid_target"},
			"a client of another organization":             {foreign, url.Values{}, "invalid_grant"},
			"a client without the grant":                   {billing, url.Values{}, "unauthorized_client"},
			"a token that was already exchanged":           {gateway, url.Values{"subject_token": {r.Body["access_token"].(string)}}, "invalid_grant"},
			"an API key's token":                           {gateway, url.Values{"subject_token": {apiKeyToken(ctx, org)}}, "invalid_grant"},
			"an impersonation by an organization's client": {gateway, url.Values{"subject_token_type": {"urn:tenancy.dev:params:oauth:token-type:email"}, "subject_token": {email}}, "unauthorized_client"},
		} {
			form := c.form
			if form.Has("subject_token_type") {
				form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
				r := postForm("/oauth2/token", form, c.client.ID, c.client.Secret)
				Expect(r.Body["error"]).To(Equal(c.code), name)
				continue
			}
			Expect(exchange(c.client, form).Body["error"]).To(Equal(c.code), name)
		}
	})
})

// projectID is the row id of a Ready project.
func projectID(ctx context.Context, p *tenancyv1.Project) string {
	GinkgoHelper()
	Expect(kube.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
	return p.Status.ID
}

// apiKeyToken is an access token of a new API key of org.
func apiKeyToken(ctx context.Context, org *tenancyv1.Organization) string {
	GinkgoHelper()
	key := apiKeyOf(ctx, org, tenancyv1.RoleViewer)
	r := postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, key.id, key.secret)
	Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
	return r.Body["access_token"].(string)
}
