package selfservice_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// registerClient creates an OAuthClient, waits for it, and returns its client_id and secret.
func registerClient(ctx context.Context, namespace string, spec tenancyv1.OAuthClientSpec) (id, secret string) {
	GinkgoHelper()
	c := &tenancyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: uniqueName("app")}, Spec: spec}
	Expect(admin.Create(ctx, c)).To(Succeed())
	DeferCleanup(func(ctx context.Context) { _ = admin.Delete(ctx, c) })
	eventuallyReady(ctx, c)
	Expect(admin.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
	if spec.Public {
		return c.Status.ClientID, ""
	}
	var s corev1.Secret
	Expect(admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: c.Status.SecretName}, &s)).To(Succeed())
	return c.Status.ClientID, string(s.Data[tenancyv1.OAuthClientSecretKey])
}

var _ = Describe("An application signing people in through authd", func() {
	It("works in Chromium with go-oidc: login, consent, the code at the application, a verified ID token", func(ctx SpecContext) {
		t := newTenant(ctx)
		clientID, secret := registerClient(ctx, t.ns(), tenancyv1.OAuthClientSpec{DisplayName: "Notes app",
			RedirectURIs: []string{"http://127.0.0.1/callback"},
			Scopes:       []tenancyv1.OAuthScope{"openid", "email", "profile"}})

		// The application: go-oidc and x/oauth2 on a loopback port, as a developer would write it.
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		appURL := "http://" + listener.Addr().String()
		provider, err := oidc.NewProvider(ctx, authdURL)
		Expect(err).NotTo(HaveOccurred())
		conf := oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: appURL + "/callback",
			Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
		verifier := oauth2.GenerateVerifier()
		mux := http.NewServeMux()
		mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, conf.AuthCodeURL("browser-state", oidc.Nonce("browser-nonce"), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
		})
		mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("state") != "browser-state" {
				http.Error(w, "wrong state", http.StatusBadRequest)
				return
			}
			tok, err := conf.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				http.Error(w, "exchange: "+err.Error(), http.StatusBadGateway)
				return
			}
			raw, _ := tok.Extra("id_token").(string)
			idToken, err := provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(r.Context(), raw)
			if err != nil || idToken.Nonce != "browser-nonce" {
				http.Error(w, fmt.Sprintf("id token: %v", err), http.StatusBadGateway)
				return
			}
			var claims struct {
				Email   string `json:"email"`
				OrgName string `json:"org_name"`
				Role    string `json:"role"`
			}
			_ = idToken.Claims(&claims)
			_, _ = fmt.Fprintf(w, `<!doctype html><p id="hello">Hello %s, %s of %s</p>`, claims.Email, claims.Role, claims.OrgName)
		})
		server := &http.Server{Handler: mux}
		go func() { _ = server.Serve(listener) }()
		DeferCleanup(server.Close)

		b := newBrowser()
		b.step("the application sends the browser to authd's login page",
			chromedp.Navigate(appURL+"/start"), chromedp.WaitVisible("#login-form"))
		Expect(b.path()).To(Equal("/login"))
		b.step("log in",
			chromedp.SendKeys("#email", t.member), chromedp.SendKeys("#password", password), chromedp.Click("#login-submit"),
			chromedp.WaitVisible("#consent-allow"))
		Expect(b.text("h1")).To(ContainSubstring("Notes app"))
		Expect(b.text("#scopes")).To(ContainSubstring("see your email address"))
		b.step("allow: the browser lands at the application with a code it exchanges",
			chromedp.Click("#consent-allow"), chromedp.WaitVisible("#hello"))
		Expect(b.text("#hello")).To(Equal(fmt.Sprintf("Hello %s, Member of %s", t.member, t.org.Name)))

		b.step("the second sign-in needs no consent",
			chromedp.Navigate(appURL+"/start"), chromedp.WaitVisible("#hello"))
	})
})

var _ = Describe("Support acting as a person (token exchange)", func() {
	It("gives a platform admin 15 minutes as the person, with a reason, an audit row and a mail to the Owners", func(ctx SpecContext) {
		t := newTenant(ctx)
		clientID, secret := registerClient(ctx, operatorNamespace, tenancyv1.OAuthClientSpec{DisplayName: "Support console", FirstParty: true,
			RedirectURIs: []string{"https://support.example/callback"},
			GrantTypes:   []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantTokenExchange}})
		exchange := func(form url.Values) response {
			form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
			form.Set("subject_token_type", "urn:tenancy.dev:params:oauth:token-type:email")
			form.Set("actor_token_type", "urn:tenancy.dev:params:oauth:token-type:kubernetes")
			req, err := http.NewRequest(http.MethodPost, authdURL+"/oauth2/token", strings.NewReader(form.Encode()))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(clientID, secret)
			return send(req)
		}
		adminToken := serviceAccountToken(ctx, "platform-admin")
		request := url.Values{"subject_token": {t.member}, "actor_token": {adminToken}, "organization": {t.org.Name},
			"reason": {"ticket 4711: cannot see their notes"}}

		for name, c := range map[string]struct {
			change func(url.Values)
			status int
			code   string
		}{
			"without a reason":          {func(f url.Values) { f.Del("reason") }, http.StatusBadRequest, "invalid_request"},
			"by someone else":           {func(f url.Values) { f.Set("actor_token", serviceAccountToken(ctx, "helpdesk")) }, http.StatusForbidden, "access_denied"},
			"with a forged actor token": {func(f url.Values) { f.Set("actor_token", "not-a-token") }, http.StatusBadRequest, "invalid_grant"},
			"in another organization":   {func(f url.Values) { f.Set("organization", "nowhere") }, http.StatusBadRequest, "invalid_grant"},
		} {
			form := url.Values{}
			for k, v := range request {
				form[k] = v
			}
			c.change(form)
			r := exchange(form)
			Expect(r.StatusCode).To(Equal(c.status), "%s: %s", name, r.Raw)
			Expect(r.Body["error"]).To(Equal(c.code), name)
		}

		r := exchange(request)
		Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
		Expect(r.Body).NotTo(HaveKey("refresh_token"))
		Expect(r.Body["expires_in"]).To(BeNumerically("<=", 900))
		claims := jwt.MapClaims{}
		_, _, err := jwt.NewParser().ParseUnverified(r.Body["access_token"].(string), claims)
		Expect(err).NotTo(HaveOccurred())
		Expect(claims["sub"]).To(Equal(userID(ctx, t.member)))
		Expect(claims["role"]).To(Equal("Member"))
		Expect(claims["act"]).To(And(HaveKeyWithValue("sub", platformAdminUsername), HaveKeyWithValue("impersonation", true),
			HaveKeyWithValue("reason", "ticket 4711: cannot see their notes")))
		Expect(hasRoleUnderRLS(ctx, r.Body["access_token"].(string))).To(BeTrue(), "the database sees the person")
		Expect(do(http.MethodGet, "/auth/me", r.Body["access_token"].(string), nil).StatusCode).To(Equal(http.StatusUnauthorized),
			"the person's own account pages and API are not the support's")

		// authd writes audit rows in batches, a moment after the answer.
		Eventually(func() []string {
			return auditRows(ctx, "action = 'token.impersonated' AND target = $1 AND details->>'reason' = $2", "user/"+t.member,
				"ticket 4711: cannot see their notes")
		}).WithContext(ctx).Should(ConsistOf(platformAdminUsername + " token.impersonated user/" + t.member))
		msg := mailpit.WaitForMessage(GinkgoT(), ctx, t.owner, "Support is acting as "+t.member)
		detail, err := mailpit.Message(ctx, msg.ID)
		Expect(err).NotTo(HaveOccurred())
		Expect(detail.Text).To(ContainSubstring("ticket 4711: cannot see their notes"))
		Expect(detail.Text).To(ContainSubstring(platformAdminUsername))
	})
})
