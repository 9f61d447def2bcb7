package authd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// verifier checks tokens as an application would: with nothing but authd's published JWKS.
func verifier() *tenancy.Verifier {
	return tenancy.NewVerifier(authdURL, "tenancy", tenancy.NewJWKSCache(authdURL+"/.well-known/jwks.json"))
}

var _ = Describe("Invitations and logins", func() {
	It("accept an invitation once, activate the membership, and log the user in", func(ctx SpecContext) {
		org := organization(ctx, "invite")
		m, token := member(ctx, org, "ivy@example.com", tenancyv1.RoleAdmin)
		Expect(token).NotTo(BeEmpty())

		short := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": "short"})
		Expect(short.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(short.Body["error_description"]).To(ContainSubstring("at least 12 characters"))

		accepted := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password})
		Expect(accepted.StatusCode).To(Equal(http.StatusOK), accepted.Raw)
		Expect(accepted.Body).To(HaveKey("access_token"))
		Expect(accepted.Body["organization"]).To(Equal(org.Name))
		Eventually(func() tenancyv1.MembershipState {
			Expect(kube.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
			return m.Status.State
		}).WithContext(ctx).WithTimeout(5 * time.Second).Should(Equal(tenancyv1.MembershipActive))

		again := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password})
		Expect(again.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(again.Body["error"]).To(Equal("invalid_invitation"))

		tokens := login("ivy@example.com", org.Name)
		claims, err := verifier().Verify(ctx, tokens["access_token"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Role).To(Equal("Admin"))
		Expect(claims.Org).To(Equal(orgID(ctx, org)))
		Expect(claims.HasPermission("members:write")).To(BeTrue())
		Eventually(func() []string { return actions(ctx, "ivy@example.com") }).WithContext(ctx).
			Should(ContainElements("invitation.accepted", "login.succeeded", "token.issued"))
	})

	It("answer a wrong password and an unknown user alike, and throttle per account", func(ctx SpecContext) {
		org := organization(ctx, "wrong")
		activeMember(ctx, org, "wanda@example.com", tenancyv1.RoleMember)
		wrong := postJSON(authdURL, "/auth/login", map[string]string{"email": "wanda@example.com", "password": "not the password"})
		unknown := postJSON(authdURL, "/auth/login", map[string]string{"email": "nobody@example.com", "password": "not the password"})
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(unknown.StatusCode).To(Equal(wrong.StatusCode))
		Expect(unknown.Body).To(Equal(wrong.Body))
		Eventually(func() []string { return actions(ctx, "wanda@example.com") }).WithContext(ctx).Should(ContainElement("login.failed"))

		strict := suiteConf
		strict.Throttle = authd.ThrottleConfig{AddressBurst: 100, AddressInterval: time.Hour,
			AccountFreeFailures: 1, AccountDelay: time.Hour, AccountMaxDelay: time.Hour}
		base := startAuthd(strict)
		for range 2 {
			Expect(postJSON(base, "/auth/login", map[string]string{"email": "wanda@example.com", "password": "nope"}).StatusCode).To(Equal(http.StatusUnauthorized))
		}
		throttled := postJSON(base, "/auth/login", map[string]string{"email": "wanda@example.com", "password": password})
		Expect(throttled.StatusCode).To(Equal(http.StatusTooManyRequests))
		Expect(throttled.Header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(throttled.Body["error"]).To(Equal("slow_down"))
	})

	It("give a user of several organizations a token without one, which only /auth/me accepts", func(ctx SpecContext) {
		first, second := organization(ctx, "multi"), organization(ctx, "multi")
		activeMember(ctx, first, "mo@example.com", tenancyv1.RoleViewer)
		activeMember(ctx, second, "mo@example.com", tenancyv1.RoleMember)
		tokens := login("mo@example.com", "")
		bearer := "Bearer " + tokens["access_token"].(string)
		me := get("/auth/me", "Authorization", bearer)
		Expect(me.StatusCode).To(Equal(http.StatusOK), me.Raw)
		Expect(me.Body["memberships"]).To(HaveLen(2))

		app := httptest.NewServer(verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
		defer app.Close()
		req, _ := http.NewRequest(http.MethodGet, app.URL, nil)
		req.Header.Set("Authorization", bearer)
		Expect(do(req).StatusCode).To(Equal(http.StatusUnauthorized))

		By("refreshing into one of the organizations")
		switched := postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": tokens["refresh_token"].(string), "organization": second.Name})
		Expect(switched.StatusCode).To(Equal(http.StatusOK), switched.Raw)
		claims, err := verifier().Verify(ctx, switched.Body["access_token"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Role).To(Equal("Member"))
		denied := postJSON(authdURL, "/auth/login", map[string]string{"email": "mo@example.com", "password": password, "organization": "elsewhere"})
		Expect(denied.StatusCode).To(Equal(http.StatusForbidden))

		By("an organization named like another one's id never mixes the two")
		lookalike := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: orgID(ctx, first)}}
		Expect(kube.Create(ctx, lookalike)).To(Succeed())
		eventuallyReady(ctx, lookalike)
		activeMember(ctx, lookalike, "mo@example.com", tenancyv1.RoleOwner)
		byID, err := verifier().Verify(ctx, login("mo@example.com", orgID(ctx, first))["access_token"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(byID.Org).To(Equal(orgID(ctx, first)))
		Expect(byID.Role).To(Equal("Viewer"), "the id names the first organization, where mo is Viewer")

		By("a request that cannot be audited as sent does not lose other audit rows")
		odd := postJSON(authdURL, "/auth/login", map[string]string{"email": "mo@example.com", "password": password, "organization": "nul\u0000here"})
		Expect(odd.StatusCode).To(Equal(http.StatusForbidden))
		login("mo@example.com", second.Name)
		Eventually(func() []string {
			return slices.DeleteFunc(actions(ctx, "mo@example.com"), func(a string) bool { return a != "login.failed" })
		}).WithContext(ctx).Should(HaveLen(2), "the refusal for elsewhere, and this one")
	})
})

var _ = Describe("Access tokens", func() {
	It("verify with the published JWKS and carry a request context the database trusts", func(ctx SpecContext) {
		org := organization(ctx, "ctx")
		activeMember(ctx, org, "carl@example.com", tenancyv1.RoleMember)
		raw := login("carl@example.com", org.Name)["access_token"].(string)
		claims, err := verifier().Verify(ctx, raw)
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Issuer).To(Equal(authdURL))
		Expect(claims.ClientID).To(Equal(tenancy.SessionClientID))
		Expect(claims.ExpiresAt.Sub(claims.IssuedAt.Time)).To(Equal(15 * time.Minute))
		parsed, _, err := jwt.NewParser().ParseUnverified(raw, &tenancy.Claims{})
		Expect(err).NotTo(HaveOccurred())
		Expect(parsed.Header).To(And(HaveKeyWithValue("typ", "at+jwt"), HaveKeyWithValue("alg", signingKey(ctx, signingKID(ctx)).Alg)))

		conn, err := sqlPool.Acquire(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Release()
		Expect(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true)", claims.TCtx); err != nil {
				return err
			}
			var user, orgFromDB string
			var allowed bool
			if err := tx.QueryRow(ctx, "SELECT tenancy.current_user_id()::text, tenancy.current_org_id()::text, tenancy.has_role(tenancy.current_org_id(), NULL, 'Member')").
				Scan(&user, &orgFromDB, &allowed); err != nil {
				return err
			}
			Expect(user).To(Equal(claims.Subject))
			Expect(orgFromDB).To(Equal(claims.Org))
			Expect(allowed).To(BeTrue())
			return nil
		})).To(Succeed())
	})

	It("refuses forged, foreign, expired and oversized tokens quickly", func(ctx SpecContext) {
		org := organization(ctx, "forge")
		activeMember(ctx, org, "fay@example.com", tenancyv1.RoleMember)
		good := login("fay@example.com", org.Name)["access_token"].(string)
		genuine, err := verifier().Verify(ctx, good)
		Expect(err).NotTo(HaveOccurred())
		kid := signingKID(ctx)
		sign := func(method jwt.SigningMethod, key any, header map[string]any, mutate func(*tenancy.Claims)) string {
			c := *genuine
			mutate(&c)
			t := jwt.NewWithClaims(method, c)
			t.Header["typ"], t.Header["kid"] = "at+jwt", kid
			for k, v := range header {
				t.Header[k] = v
			}
			s, err := t.SignedString(key)
			Expect(err).NotTo(HaveOccurred())
			return s
		}
		same := func(*tenancy.Claims) {}
		_, stranger, _ := ed25519.GenerateKey(rand.Reader)
		ours := signingKey(ctx, kid)
		method, publicKey := jwt.SigningMethod(jwt.SigningMethodEdDSA), []byte(nil)
		switch pub := ours.Public().(type) {
		case ed25519.PublicKey:
			publicKey = pub
		case *ecdsa.PublicKey: // after the rotation spec, the signer is ES256
			method = jwt.SigningMethodES256
			publicKey, err = pub.Bytes()
			Expect(err).NotTo(HaveOccurred())
		}
		none, err := jwt.NewWithClaims(jwt.SigningMethodNone, genuine).SignedString(jwt.UnsafeAllowNoneSignatureType)
		Expect(err).NotTo(HaveOccurred())
		Expect(verifier().Verify(ctx, sign(method, ours.Private, nil, same))).NotTo(BeNil(), "the forger works")
		forged := map[string]string{
			"alg none":                        none,
			"HS256 keyed with the public key": sign(jwt.SigningMethodHS256, publicKey, nil, same),
			"another key under our kid":       sign(jwt.SigningMethodEdDSA, stranger, nil, same),
			"an unknown kid":                  sign(jwt.SigningMethodEdDSA, stranger, map[string]any{"kid": "0123456789abcdef"}, same),
			"an injected kid":                 sign(jwt.SigningMethodEdDSA, stranger, map[string]any{"kid": "../../../etc/passwd"}, same),
			"typ JWT":                         sign(method, ours.Private, map[string]any{"typ": "JWT"}, same),
			"another issuer":                  sign(method, ours.Private, nil, func(c *tenancy.Claims) { c.Issuer = "https://evil.example" }),
			"another audience":                sign(method, ours.Private, nil, func(c *tenancy.Claims) { c.Audience = jwt.ClaimStrings{"other"} }),
			"expired": sign(method, ours.Private, nil, func(c *tenancy.Claims) {
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			}),
			"a megabyte":         strings.Repeat("a", 1<<20),
			"a tampered payload": tamper(good),
		}
		for reason, token := range forged {
			_, err := verifier().Verify(ctx, token)
			Expect(err).To(MatchError(tenancy.ErrInvalidToken), reason)
			Expect(get("/auth/me", "Authorization", "Bearer "+token).StatusCode).To(Equal(http.StatusUnauthorized), reason)
		}

		v := verifier()
		huge := forged["a megabyte"]
		allocs := testing.AllocsPerRun(20, func() { _, _ = v.Verify(ctx, huge) })
		Expect(allocs).To(BeNumerically("<=", 4), "a huge token is refused before it is parsed")
	})
})

// tamper changes one character of a token's payload.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	b := []byte(parts[1])
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

func signingKID(ctx context.Context) string {
	GinkgoHelper()
	set := keySet(ctx)
	k, ok := set.Signer(time.Now())
	Expect(ok).To(BeTrue())
	return k.KID
}

func signingKey(ctx context.Context, kid string) signing.Key {
	GinkgoHelper()
	for _, k := range keySet(ctx).Keys {
		if k.KID == kid {
			return k
		}
	}
	Fail("no key " + kid)
	return signing.Key{}
}

func keySet(ctx context.Context) *signing.Set {
	GinkgoHelper()
	secret := &corev1.Secret{}
	Expect(kube.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: signing.SecretName}, secret)).To(Succeed())
	set, err := signing.Parse(secret.Data[signing.SecretKey])
	Expect(err).NotTo(HaveOccurred())
	return set
}

func orgID(ctx context.Context, org *tenancyv1.Organization) string {
	GinkgoHelper()
	Expect(kube.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
	return org.Status.ID
}

// actions lists the audit actions whose actor is actor.
func actions(ctx context.Context, actor string) []string {
	GinkgoHelper()
	rows, err := sqlPool.Query(ctx, "SELECT action FROM tenancy.audit_log WHERE actor = $1", actor)
	Expect(err).NotTo(HaveOccurred())
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	Expect(err).NotTo(HaveOccurred())
	return list
}

var _ = Describe("Refresh tokens", func() {
	var org *tenancyv1.Organization
	BeforeEach(func(ctx SpecContext) {
		org = organization(ctx, "refresh")
		activeMember(ctx, org, "rita@example.com", tenancyv1.RoleMember)
	})
	refresh := func(token string) response {
		return postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": token})
	}

	It("rotate on every use, let concurrent refreshes through, and revoke the family on later reuse", func(ctx SpecContext) {
		metrics, err := http.NewRequest(http.MethodGet, metricsURLs[authdURL]+"/metrics", nil)
		Expect(err).NotTo(HaveOccurred())
		reuses := func() string {
			return regexp.MustCompile(`tenancy_authd_refresh_reuse_detected_total \d+`).FindString(do(metrics).Raw)
		}
		before := reuses()
		first := login("rita@example.com", org.Name)["refresh_token"].(string)
		Expect(first).To(HavePrefix("tnr_"))
		Expect(len(first)).To(BeNumerically(">=", 4+43), "256 bits")

		var wg sync.WaitGroup
		results := make([]response, 2)
		for i := range results {
			wg.Go(func() { defer GinkgoRecover(); results[i] = refresh(first) })
		}
		wg.Wait()
		for _, r := range results {
			Expect(r.StatusCode).To(Equal(http.StatusOK), "within the reuse interval: %s", r.Raw)
		}
		second := results[0].Body["refresh_token"].(string)
		Expect(second).NotTo(Equal(first))

		By("using the first token again, after the reuse interval")
		_, err = sqlPool.Exec(ctx, "UPDATE tenancy.refresh_tokens SET rotated_at = now() - interval '1 minute' WHERE rotated_at IS NOT NULL")
		Expect(err).NotTo(HaveOccurred())
		reused := refresh(first)
		Expect(reused.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(reused.Body["error"]).To(Equal("invalid_grant"))
		Expect(reused.Body["error_description"]).To(ContainSubstring("every session of its family is revoked"))
		Expect(refresh(second).StatusCode).To(Equal(http.StatusBadRequest), "the thief's and the owner's tokens die together")
		count := func(metric string) int {
			n, _ := strconv.Atoi(strings.TrimPrefix(metric, "tenancy_authd_refresh_reuse_detected_total "))
			return n
		}
		Expect(count(reuses())).To(Equal(count(before)+1), "one reuse detected")
		Expect(get("/metrics").StatusCode).To(Equal(http.StatusNotFound), "metrics stay off the public port")
	})

	It("end with logout and with revocation, and answer introspection", func(ctx SpecContext) {
		tokens := login("rita@example.com", org.Name)
		rt := tokens["refresh_token"].(string)
		key := apiKeyOf(ctx, org, tenancyv1.RoleViewer)
		introspect := func(token string) response {
			return postForm("/oauth2/introspect", url.Values{"token": {token}}, key.id, key.secret)
		}
		Expect(postForm("/oauth2/introspect", url.Values{"token": {rt}}, "", "").StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(introspect(rt).Body).To(HaveKeyWithValue("active", true))
		access := introspect(tokens["access_token"].(string))
		Expect(access.Body).To(And(HaveKeyWithValue("active", true), HaveKeyWithValue("role", "Member"), HaveKeyWithValue("token_type", "access_token")))
		Expect(introspect("garbage").Body).To(Equal(map[string]any{"active": false}))
		stranger := apiKeyOf(ctx, organization(ctx, "stranger"), tenancyv1.RoleViewer)
		Expect(postForm("/oauth2/introspect", url.Values{"token": {rt}}, stranger.id, stranger.secret).Body).
			To(Equal(map[string]any{"active": false}), "another organization learns nothing")

		Expect(postJSON(authdURL, "/auth/logout", map[string]string{"refresh_token": rt}).StatusCode).To(Equal(http.StatusNoContent))
		Expect(refresh(rt).StatusCode).To(Equal(http.StatusBadRequest))
		Expect(introspect(rt).Body).To(Equal(map[string]any{"active": false}))

		other := login("rita@example.com", org.Name)["refresh_token"].(string)
		Expect(postForm("/oauth2/revoke", url.Values{"token": {other}}, "", "").StatusCode).To(Equal(http.StatusOK))
		Expect(refresh(other).StatusCode).To(Equal(http.StatusBadRequest))
		Expect(postForm("/oauth2/revoke", url.Values{"token": {tokens["access_token"].(string)}}, "", "").Body["error"]).To(Equal("unsupported_token_type"))
		subject := mustSubject(ctx, tokens)
		Eventually(func() []string { return actions(ctx, "user:"+subject) }).WithContext(ctx).Should(ContainElements("logout", "session.revoked"))
	})
})

func mustSubject(ctx context.Context, tokens map[string]any) string {
	GinkgoHelper()
	claims, err := verifier().Verify(ctx, tokens["access_token"].(string))
	Expect(err).NotTo(HaveOccurred())
	return claims.Subject
}

type keyCredentials struct {
	id, secret string
	object     *tenancyv1.APIKey
}

// apiKeyOf creates an APIKey and reads its key from the Secret.
func apiKeyOf(ctx context.Context, org *tenancyv1.Organization, role tenancyv1.Role) keyCredentials {
	GinkgoHelper()
	k := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: uniqueName("key")}, Spec: tenancyv1.APIKeySpec{Role: role}}
	Expect(kube.Create(ctx, k)).To(Succeed())
	eventuallyReady(ctx, k)
	secret := &corev1.Secret{}
	Expect(kube.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: k.SecretNameOrDefault()}, secret)).To(Succeed())
	return keyCredentials{id: string(secret.Data["keyID"]), secret: string(secret.Data["apiKey"]), object: k}
}

var _ = Describe("The OAuth2 token endpoint", func() {
	It("trades API keys for tokens, Basic or form, and stops at once when the key goes", func(ctx SpecContext) {
		org := organization(ctx, "oauth")
		key := apiKeyOf(ctx, org, tenancyv1.RoleAdmin)
		grant := url.Values{"grant_type": {"client_credentials"}}

		basic := postForm("/oauth2/token", grant, key.id, key.secret)
		Expect(basic.StatusCode).To(Equal(http.StatusOK), basic.Raw)
		Expect(basic.Body).NotTo(HaveKey("refresh_token"))
		claims, err := verifier().Verify(ctx, basic.Body["access_token"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.IsAPIKey()).To(BeTrue())
		Expect(claims.Subject).To(Equal(key.id))
		Expect(claims.Role).To(Equal("Admin"))
		Expect(claims.TCtx).NotTo(BeEmpty())

		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {key.id}, "client_secret": {key.secret}}
		Expect(postForm("/oauth2/token", form, "", "").StatusCode).To(Equal(http.StatusOK))

		other := []byte(key.secret)
		other[20] = map[bool]byte{true: 'y', false: 'x'}[other[20] == 'x'] // another key of the same id
		wrong := postForm("/oauth2/token", grant, key.id, string(other))
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(wrong.Body["error"]).To(Equal("invalid_client"))
		Expect(wrong.Header.Get("WWW-Authenticate")).To(ContainSubstring("Basic"))
		Expect(postForm("/oauth2/token", url.Values{"grant_type": {"password"}}, "", "").Body["error"]).To(Equal("unsupported_grant_type"))
		Expect(postForm("/oauth2/token", url.Values{}, "", "").Body["error"]).To(Equal("invalid_request"))

		By("an expired key, then a revoked one, fail at once")
		for _, change := range []string{
			"UPDATE tenancy.api_keys SET expires_at = now() - interval '1 second' WHERE key_id = $1",
			"UPDATE tenancy.api_keys SET expires_at = NULL, revoked_at = now() WHERE key_id = $1",
		} {
			_, err := sqlPool.Exec(ctx, change, key.id)
			Expect(err).NotTo(HaveOccurred())
			Expect(postForm("/oauth2/token", grant, key.id, key.secret).StatusCode).To(Equal(http.StatusUnauthorized), change)
		}

		By("a deleted key fails too")
		fresh := apiKeyOf(ctx, org, tenancyv1.RoleMember)
		Expect(postForm("/oauth2/token", grant, fresh.id, fresh.secret).StatusCode).To(Equal(http.StatusOK))
		Expect(kube.Delete(ctx, fresh.object)).To(Succeed())
		Eventually(func() int { return postForm("/oauth2/token", grant, fresh.id, fresh.secret).StatusCode }).
			WithContext(ctx).Should(Equal(http.StatusUnauthorized))
	})

	It("answers 503 with Retry-After while the database is down", func(ctx SpecContext) {
		dbProxy.Cut()
		DeferCleanup(dbProxy.Restore)
		r := postJSON(authdURL, "/auth/login", map[string]string{"email": "x@example.com", "password": password})
		Expect(r.StatusCode).To(Equal(http.StatusServiceUnavailable), r.Raw)
		Expect(r.Header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(r.Body["error"]).To(Equal("temporarily_unavailable"))
		Expect(get("/readyz").StatusCode).To(Equal(http.StatusServiceUnavailable))
		Expect(get("/healthz").StatusCode).To(Equal(http.StatusOK))

		By("the database is back: authd answers again, without a restart")
		dbProxy.Restore()
		Eventually(func() int {
			return postJSON(authdURL, "/auth/login", map[string]string{"email": "x@example.com", "password": password}).StatusCode
		}).WithContext(ctx).Should(Equal(http.StatusUnauthorized))
		Eventually(func() int { return get("/readyz").StatusCode }).WithContext(ctx).Should(Equal(http.StatusOK))
	})
})

var _ = Describe("Signing keys", func() {
	It("rotate while tokens are in flight: the next key is published first, the old one stays", func(ctx SpecContext) {
		org := organization(ctx, "rotate")
		key := apiKeyOf(ctx, org, tenancyv1.RoleViewer)
		grant := url.Values{"grant_type": {"client_credentials"}}
		before := postForm("/oauth2/token", grant, key.id, key.secret).Body["access_token"].(string)
		oldKID := signingKID(ctx)

		// The successor is an ES256 key (the manager's --signing-key-algorithm=ES256).
		soon := *rotator
		soon.Policy.RotateEvery, soon.Policy.PublishAhead, soon.Policy.Algorithm = time.Nanosecond, 2*time.Second, signing.ES256
		Expect(soon.Sync(ctx, time.Now())).To(Succeed())
		Eventually(func() []any { return get("/.well-known/jwks.json").Body["keys"].([]any) }).WithContext(ctx).Should(HaveLen(2))

		Eventually(func(g Gomega) {
			after := postForm("/oauth2/token", grant, key.id, key.secret).Body["access_token"].(string)
			t, _, err := jwt.NewParser().ParseUnverified(after, &tenancy.Claims{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(t.Header["kid"]).NotTo(Equal(oldKID))
			g.Expect(t.Header["alg"]).To(Equal("ES256"))
			_, err = verifier().Verify(ctx, after)
			g.Expect(err).NotTo(HaveOccurred())
		}).WithContext(ctx).Should(Succeed())
		Expect(soon.Sync(ctx, time.Now())).To(Succeed()) // the old key gets its expiry
		_, err := verifier().Verify(ctx, before)
		Expect(err).NotTo(HaveOccurred(), "a token of the replaced key verifies until it expires")
		Expect(get("/.well-known/jwks.json").Header.Get("Cache-Control")).To(ContainSubstring("max-age"))
	})
})

var _ = Describe("Signup", func() {
	It("creates the account, the Organization and its Owner, Ready, and refuses a taken email", func(ctx SpecContext) {
		name := uniqueName("signup")
		r := postJSON(authdURL, "/auth/signup", map[string]string{"email": "Sam@Example.com", "password": password, "organization": name})
		Expect(r.StatusCode).To(Equal(http.StatusCreated), r.Raw)
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		eventuallyReady(ctx, org)
		owner := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "owner"}}
		Eventually(func() tenancyv1.MembershipState {
			Expect(kube.Get(ctx, client.ObjectKeyFromObject(owner), owner)).To(Succeed())
			return owner.Status.State
		}).WithContext(ctx).Should(Equal(tenancyv1.MembershipActive))
		Expect(owner.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, "sam@example.com"))
		claims, err := verifier().Verify(ctx, login("sam@example.com", name)["access_token"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Role).To(Equal("Owner"))

		taken := postJSON(authdURL, "/auth/signup", map[string]string{"email": "sam@example.com", "password": password})
		Expect(taken.StatusCode).To(Equal(http.StatusConflict))
		closed := suiteConf
		closed.AllowSignup = false
		Expect(postJSON(startAuthd(closed), "/auth/signup", map[string]string{"email": "new@example.com", "password": password}).StatusCode).
			To(Equal(http.StatusNotFound))
		bad := postJSON(authdURL, "/auth/signup", map[string]string{"email": "x@example.com", "password": password, "organization": "Not A Label"})
		Expect(bad.Body["error_description"]).To(ContainSubstring("organization: must be a DNS label"))
		Expect(apierrors.IsNotFound(kube.Get(ctx, client.ObjectKey{Name: "Not A Label"}, &tenancyv1.Organization{}))).To(BeTrue())
	})
})

var _ = Describe("Signup that times out", func() {
	It("answers 503 and leaves nothing behind", func(ctx SpecContext) {
		// An admission policy refuses the Owner's invitation Secret in namespaces named late-*:
		// the Membership stalls after its rows were written, so the undo has an Organization, its
		// namespace, a Membership and a user row to clean up.
		denyInvitations(ctx, "late-")
		name := uniqueName("late")
		impatient := suiteConf
		impatient.SignupTimeout = 3 * time.Second
		r := postJSON(startAuthd(impatient), "/auth/signup", map[string]string{"email": "late@example.com", "password": password, "organization": name})
		Expect(r.StatusCode).To(Equal(http.StatusServiceUnavailable), r.Raw)
		Expect(r.Header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(r.Body["error_description"]).To(ContainSubstring("nothing was kept"))
		Expect(apierrors.IsNotFound(kube.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1.Organization{}))).To(BeTrue())
		Expect(apierrors.IsNotFound(kube.Get(ctx, client.ObjectKey{Namespace: name, Name: "owner"}, &tenancyv1.Membership{}))).To(BeTrue())
		var users int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.users WHERE email = 'late@example.com'").Scan(&users)).To(Succeed())
		Expect(users).To(BeZero())
	})
})

// denyInvitations installs, for the rest of the spec, an admission policy that refuses creating
// the Secret owner-invite in namespaces whose names start with prefix, and waits until the API
// server enforces it.
func denyInvitations(ctx context.Context, prefix string) {
	GinkgoHelper()
	fail := admissionregistrationv1.Fail
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-owner-invitations"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.name != 'owner-invite' || !request.namespace.startsWith(%q)", prefix),
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-owner-invitations"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	Expect(kube.Create(ctx, policy)).To(Succeed())
	Expect(kube.Create(ctx, binding)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Expect(kube.Delete(ctx, binding)).To(Succeed())
		Expect(kube.Delete(ctx, policy)).To(Succeed())
	})
	probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "probe"}}
	Expect(client.IgnoreAlreadyExists(kube.Create(ctx, probe))).To(Succeed())
	Eventually(func() bool {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: probe.Name, Name: "owner-invite"}}
		err := kube.Create(ctx, secret)
		if err == nil {
			Expect(kube.Delete(ctx, secret)).To(Succeed())
		}
		return apierrors.IsInvalid(err) || apierrors.IsForbidden(err)
	}).WithContext(ctx).Should(BeTrue())
}

var _ = Describe("Limits", func() {
	It("refuse oversized bodies with a JSON error", func() {
		r := postJSON(authdURL, "/auth/login", map[string]string{"email": "x@example.com", "password": strings.Repeat("p", 100<<10)})
		Expect(r.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(r.Body["error_description"]).To(ContainSubstring("larger than 65536 bytes"))
	})
})

var _ = Describe("The SDK", func() {
	It("guards handlers by role and runs queries under the token's request context", func(ctx SpecContext) {
		org, other := organization(ctx, "sdk"), organization(ctx, "sdk")
		activeMember(ctx, org, "sue@example.com", tenancyv1.RoleMember)
		activeMember(ctx, other, "olaf@example.com", tenancyv1.RoleOwner)
		bearer := "Bearer " + login("sue@example.com", org.Name)["access_token"].(string)

		appPool := sqlPool // the test server's superuser; WithTenant's queries run as tenancy_app below
		v := verifier()
		mux := http.NewServeMux()
		listOrgs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			err := tenancy.WithTenant(r.Context(), appPool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(r.Context(), "SET LOCAL ROLE tenancy_app"); err != nil {
					return err
				}
				var projectOf *string
				if err := tx.QueryRow(r.Context(), "SELECT tenancy.current_project_id()::text").Scan(&projectOf); err != nil {
					return err
				}
				_, err := fmt.Fprint(w, projectOf != nil)
				return err
			})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
		mux.Handle("/projects/{project}/narrowed", v.Middleware(listOrgs))
		mux.Handle("/orgs", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			err := tenancy.WithTenant(r.Context(), appPool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(r.Context(), "SET LOCAL ROLE tenancy_app"); err != nil {
					return err
				}
				rows, err := tx.Query(r.Context(), "SELECT name FROM tenancy.organizations ORDER BY name")
				if err != nil {
					return err
				}
				names, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					return err
				}
				if err := tenancy.Audit(r.Context(), tx, "report.viewed", "orgs", nil); err != nil {
					return err
				}
				_, err = w.Write([]byte(strings.Join(names, ",")))
				return err
			})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})))
		mux.Handle("/admin", v.Middleware(tenancy.RequireRole(tenancy.RoleAdmin)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))))
		app := httptest.NewServer(mux)
		defer app.Close()
		call := func(path, auth string) response {
			req, _ := http.NewRequest(http.MethodGet, app.URL+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			return do(req)
		}
		Expect(call("/orgs", "").StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(call("/orgs", "Bearer nonsense").StatusCode).To(Equal(http.StatusUnauthorized))
		seen := call("/orgs", bearer)
		Expect(seen.StatusCode).To(Equal(http.StatusOK), seen.Raw)
		Expect(seen.Raw).To(Equal(org.Name), "RLS shows the member's organization only")
		Expect(call("/admin", bearer).StatusCode).To(Equal(http.StatusForbidden))
		Expect(call("/projects/not-an-id/narrowed", bearer).StatusCode).To(Equal(http.StatusForbidden))
		web := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: "web"}}
		Expect(kube.Create(ctx, web)).To(Succeed())
		eventuallyReady(ctx, web)
		narrowed := call("/projects/"+web.Status.ID+"/narrowed", bearer)
		Expect(narrowed.Raw).To(Equal("true"), "the path value narrows the request to the project: %s", narrowed.Raw)
		var audited int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'report.viewed' AND organization_id = $1", orgID(ctx, org)).
			Scan(&audited)).To(Succeed())
		Expect(audited).To(Equal(1))
	})
})
