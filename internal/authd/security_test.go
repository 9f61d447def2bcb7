package authd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/authd"
)

// The regression specs of docs/security.md: each one is an attack that worked on an earlier
// version.

// membershipState reads a Membership's state once its controller has reconciled it.
func membershipState(ctx context.Context, m *tenancyv1.Membership) tenancyv1.MembershipState {
	GinkgoHelper()
	eventuallyReady(ctx, m)
	return m.Status.State
}

var _ = Describe("An invitation link someone else could read", func() {
	It("does not give its holder the invitee's memberships in other organizations", func(ctx SpecContext) {
		home, victim, later := organization(ctx, "home"), organization(ctx, "victim"), organization(ctx, "later")
		activeMember(ctx, home, "mallory@example.com", tenancyv1.RoleAdmin)
		bearer := "Bearer " + login("mallory@example.com", home.Name)["access_token"].(string)
		before, _ := member(ctx, victim, "cfo@victim.example", tenancyv1.RoleAdmin)
		Expect(before.Status.State).To(Equal(tenancyv1.MembershipInvited))

		By("an Admin of one organization invites the victim's email and accepts the link herself")
		var invited response
		Eventually(func(g Gomega) { // the Admin's RoleBinding follows her membership a moment later
			invited = postJSON(authdURL, "/api/v1/organizations/"+home.Name+"/members",
				map[string]string{"email": "cfo@victim.example", "role": "Member"}, "Authorization", bearer)
			g.Expect(invited.StatusCode).To(Equal(http.StatusCreated), invited.Raw)
		}).WithContext(ctx).Should(Succeed())
		link, err := url.Parse(invited.Body["invitationURL"].(string))
		Expect(err).NotTo(HaveOccurred())
		accepted := postJSON(authdURL, "/auth/invitations/accept",
			map[string]string{"token": link.Query().Get("token"), "password": "mallory's own password"})
		Expect(accepted.StatusCode).To(Equal(http.StatusOK), accepted.Raw)

		By("the victim's memberships elsewhere, older and newer, stay Invited and grant no token")
		after, _ := member(ctx, later, "cfo@victim.example", tenancyv1.RoleOwner)
		Expect(membershipState(ctx, after)).To(Equal(tenancyv1.MembershipInvited))
		Expect(kube.Patch(ctx, before, client.RawPatch("application/merge-patch+json",
			[]byte(`{"metadata":{"annotations":{"tenancy.dev/reinvite":"resync"}}}`)))).To(Succeed())
		Consistently(func() tenancyv1.MembershipState { return membershipState(ctx, before) }, "2s").
			WithContext(ctx).Should(Equal(tenancyv1.MembershipInvited))
		for _, org := range []string{victim.Name, later.Name} {
			r := postJSON(authdURL, "/auth/login", map[string]string{
				"email": "cfo@victim.example", "password": "mallory's own password", "organization": org})
			Expect(r.StatusCode).To(Equal(http.StatusForbidden), r.Raw)
			Expect(r.Body["error"]).To(Equal("membership_not_active"))
		}
		var states []string
		rows, err := sqlPool.Query(ctx, `SELECT m.state::text FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
			JOIN tenancy.organizations o ON o.id = m.organization_id WHERE u.email = 'cfo@victim.example' AND o.name <> $1`, home.Name)
		Expect(err).NotTo(HaveOccurred())
		for rows.Next() {
			var state string
			Expect(rows.Scan(&state)).To(Succeed())
			states = append(states, state)
		}
		Expect(states).To(Equal([]string{"Invited", "Invited"}))

		By("the account holder accepts another membership only with that membership's own invitation, signed in")
		_, token := member(ctx, organization(ctx, "third"), "cfo@victim.example", tenancyv1.RoleViewer)
		Expect(token).NotTo(BeEmpty())
		wrong := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": "a new password of my own"})
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized), "a link cannot replace the password of an account that has one")
	})

	It("makes memberships Active at once when a platform admin vouches for the email", func(ctx SpecContext) {
		first, second := organization(ctx, "vouch"), organization(ctx, "vouch")
		activeMember(ctx, first, "vera@example.com", tenancyv1.RoleMember)
		invited, _ := member(ctx, second, "vera@example.com", tenancyv1.RoleMember)
		Expect(invited.Status.State).To(Equal(tenancyv1.MembershipInvited))

		// The suite's client is a cluster admin (system:masters), a platform admin.
		Expect(kube.Patch(ctx, invited, client.RawPatch("application/merge-patch+json",
			[]byte(`{"metadata":{"annotations":{"tenancy.dev/email-verified":"true"}}}`)))).To(Succeed())
		Eventually(func() tenancyv1.MembershipState { return membershipState(ctx, invited) }).WithContext(ctx).
			Should(Equal(tenancyv1.MembershipActive))
		var verified bool
		Expect(sqlPool.QueryRow(ctx, "SELECT email_verified_at IS NOT NULL FROM tenancy.users WHERE email = 'vera@example.com'").
			Scan(&verified)).To(Succeed())
		Expect(verified).To(BeTrue())
		Expect(login("vera@example.com", second.Name)).To(HaveKey("access_token"))
		var audited int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'user.email_verified' AND target = 'user/vera@example.com'").
			Scan(&audited)).To(Succeed())
		Expect(audited).To(Equal(1))

		By("a verified user's new memberships are Active without an invitation")
		m, token := member(ctx, organization(ctx, "vouch"), "vera@example.com", tenancyv1.RoleViewer)
		Expect(token).To(BeEmpty())
		Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive))
	})
})

var _ = Describe("Signup", func() {
	It("never adopts a namespace that exists, and tells nothing about it", func(ctx SpecContext) {
		name := uniqueName("monitoring")
		Expect(kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		Expect(kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "grafana-admin"},
			StringData: map[string]string{"password": "s3cret"}})).To(Succeed())

		r := postJSON(authdURL, "/auth/signup", map[string]string{"email": "squatter@example.com", "password": password, "organization": name})
		Expect(r.StatusCode).To(Equal(http.StatusConflict), r.Raw)
		Expect(r.Body["error"]).To(Equal("signup_refused"))
		Expect(apierrors.IsNotFound(kube.Get(ctx, client.ObjectKey{Name: name}, &tenancyv1.Organization{}))).To(BeTrue())
		var users int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.users WHERE email = 'squatter@example.com'").Scan(&users)).To(Succeed())
		Expect(users).To(BeZero())

		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "squatter@example.com", Groups: []string{"tenancy:users", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: name, Verb: "get", Resource: "secrets", Name: "grafana-admin"},
		}}
		Expect(kube.Create(ctx, review)).To(Succeed())
		Expect(review.Status.Allowed).To(BeFalse(), review.Status.Reason)
	})

	It("answers a taken email, a taken organization and a reserved name alike", func(ctx SpecContext) {
		existing := organization(ctx, "taken")
		activeMember(ctx, existing, "owner@taken.example", tenancyv1.RoleOwner)
		answers := []response{
			postJSON(authdURL, "/auth/signup", map[string]string{"email": "owner@taken.example", "password": password}),
			postJSON(authdURL, "/auth/signup", map[string]string{"email": "owner@taken.example", "password": password, "organization": uniqueName("free")}),
			postJSON(authdURL, "/auth/signup", map[string]string{"email": "newcomer@example.com", "password": password, "organization": existing.Name}),
			postJSON(authdURL, "/auth/signup", map[string]string{"email": "newcomer@example.com", "password": password, "organization": "kube-system"}),
		}
		for _, a := range answers {
			Expect(a.StatusCode).To(Equal(http.StatusConflict), a.Raw)
			Expect(a.Body).To(Equal(answers[0].Body))
			Expect(a.Raw).NotTo(ContainSubstring(existing.Name))
		}
	})
})

var _ = Describe("Introspection", func() {
	It("answers inactive once the token's membership is removed or no longer grants its role", func(ctx SpecContext) {
		org := organization(ctx, "introspect")
		key := apiKeyOf(ctx, org, tenancyv1.RoleViewer)
		introspect := func(token string) map[string]any {
			return postForm("/oauth2/introspect", url.Values{"token": {token}}, key.id, key.secret).Body
		}
		demoted := activeMember(ctx, org, "dora@example.com", tenancyv1.RoleAdmin)
		adminToken := login("dora@example.com", org.Name)["access_token"].(string)
		Expect(introspect(adminToken)).To(HaveKeyWithValue("active", true))
		Expect(kube.Patch(ctx, demoted, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"role":"Viewer"}}`)))).To(Succeed())
		Eventually(func() map[string]any { return introspect(adminToken) }).WithContext(ctx).
			Should(Equal(map[string]any{"active": false}))
		Expect(introspect(login("dora@example.com", org.Name)["access_token"].(string))).To(HaveKeyWithValue("role", "Viewer"))

		removed := activeMember(ctx, org, "remy@example.com", tenancyv1.RoleMember)
		token := login("remy@example.com", org.Name)["access_token"].(string)
		Expect(introspect(token)).To(HaveKeyWithValue("active", true))
		Expect(kube.Delete(ctx, removed)).To(Succeed())
		Eventually(func() map[string]any { return introspect(token) }).WithContext(ctx).
			Should(Equal(map[string]any{"active": false}))
	})
})

var _ = Describe("Refresh token reuse", func() {
	var org *tenancyv1.Organization
	BeforeEach(func(ctx SpecContext) {
		org = organization(ctx, "reuse")
		activeMember(ctx, org, "reuben@example.com", tenancyv1.RoleMember)
	})
	refresh := func(token, userAgent string) response {
		return postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": token}, "User-Agent", userAgent)
	}

	It("accepts a rotated token once more within the interval, from the client that rotated it, and never twice", func() {
		first := login("reuben@example.com", org.Name)["refresh_token"].(string)
		second := refresh(first, "app/1.0")
		Expect(second.StatusCode).To(Equal(http.StatusOK), second.Raw)
		retried := refresh(first, "app/1.0")
		Expect(retried.StatusCode).To(Equal(http.StatusOK), "a retry whose answer was lost: %s", retried.Raw)
		third := refresh(first, "app/1.0")
		Expect(third.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(third.Body["error_description"]).To(ContainSubstring("every session of its family is revoked"))
		Expect(refresh(second.Body["refresh_token"].(string), "app/1.0").StatusCode).To(Equal(http.StatusBadRequest))
		Expect(refresh(retried.Body["refresh_token"].(string), "app/1.0").StatusCode).To(Equal(http.StatusBadRequest))
	})

	It("revokes the family when another client presents a rotated token, even within the interval", func() {
		first := login("reuben@example.com", org.Name)["refresh_token"].(string)
		second := refresh(first, "app/1.0")
		Expect(second.StatusCode).To(Equal(http.StatusOK), second.Raw)
		stolen := refresh(first, "thief/6.6")
		Expect(stolen.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(refresh(second.Body["refresh_token"].(string), "app/1.0").StatusCode).To(Equal(http.StatusBadRequest))
	})

	It("never accepts a browser session's cookie at /auth/refresh", func() {
		csrf := strings.Repeat("c", 43)
		form := url.Values{"email": {"reuben@example.com"}, "password": {password}, "csrf_token": {csrf}}
		req, err := http.NewRequest(http.MethodPost, authdURL+"/login", strings.NewReader(form.Encode()))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "__Host-tenancy_csrf="+csrf)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusSeeOther))
		var cookie string
		for _, c := range resp.Cookies() {
			if c.Name == "__Host-tenancy_session" {
				cookie = c.Value
			}
		}
		Expect(cookie).To(HavePrefix("tnr_"))

		r := refresh(cookie, "app/1.0")
		Expect(r.StatusCode).To(Equal(http.StatusBadRequest), r.Raw)
		Expect(r.Body["error"]).To(Equal("invalid_grant"))
		page := get("/account", "Cookie", "__Host-tenancy_session="+cookie)
		Expect(page.StatusCode).To(Equal(http.StatusOK), "the refused refresh leaves the browser's session alone")
	})
})

var _ = Describe("Login throttling", func() {
	// Every request comes from 127.0.0.1, a trusted proxy here, so X-Forwarded-For names the
	// client: one authd sees many addresses.
	var base string
	BeforeEach(func() {
		conf := suiteConf
		conf.Throttle = authd.ThrottleConfig{
			AddressBurst: 40, AddressInterval: time.Hour,
			AccountFreeFailures: 10, AccountDelay: time.Hour, AccountMaxDelay: 2 * time.Hour, FamiliarFor: 24 * time.Hour,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		}
		base = startAuthd(conf)
	})
	loginFrom := func(address, email, pass, org string) response {
		return postJSON(base, "/auth/login", map[string]string{"email": email, "password": pass, "organization": org},
			"X-Forwarded-For", address)
	}

	It("stops one address after its burst without stopping another", func(ctx SpecContext) {
		org := organization(ctx, "throttle")
		activeMember(ctx, org, "tess@example.com", tenancyv1.RoleMember)
		var codes []int
		for i := range 41 {
			codes = append(codes, loginFrom("203.0.113.7", "guess"+string(rune('a'+i%26))+"@example.com", "wrong", "").StatusCode)
		}
		Expect(codes[:40]).To(HaveEach(http.StatusUnauthorized))
		Expect(codes[40]).To(Equal(http.StatusTooManyRequests))
		Expect(loginFrom("203.0.113.7", "tess@example.com", password, org.Name).StatusCode).To(Equal(http.StatusTooManyRequests))
		Expect(loginFrom("198.51.100.2", "tess@example.com", password, org.Name).StatusCode).To(Equal(http.StatusOK))

		By("an address the client writes itself, through no trusted proxy, is ignored")
		spoofed := postJSON(base, "/auth/login", map[string]string{"email": "tess@example.com", "password": password},
			"X-Forwarded-For", "198.51.100.2, 203.0.113.7")
		Expect(spoofed.StatusCode).To(Equal(http.StatusTooManyRequests), "the proxy appended the real client, 203.0.113.7")
	})

	It("lets the owner of a flooded account sign in from their own address, and slows down new ones", func(ctx SpecContext) {
		org := organization(ctx, "flooded")
		activeMember(ctx, org, "vic@example.com", tenancyv1.RoleMember)
		Expect(loginFrom("192.0.2.10", "vic@example.com", password, org.Name).StatusCode).To(Equal(http.StatusOK))

		By("an attacker floods the account from two addresses")
		for i := range 41 {
			loginFrom([]string{"203.0.113.8", "203.0.113.9"}[i%2], "vic@example.com", "guess", org.Name)
		}
		Expect(loginFrom("203.0.113.8", "vic@example.com", password, org.Name).StatusCode).To(Equal(http.StatusTooManyRequests))

		By("the owner's own address is not slowed down by failures elsewhere")
		Expect(loginFrom("192.0.2.10", "vic@example.com", password, org.Name).StatusCode).To(Equal(http.StatusOK))

		By("a new address waits, for at most the longest delay")
		fresh := loginFrom("192.0.2.99", "vic@example.com", password, org.Name)
		Expect(fresh.StatusCode).To(Equal(http.StatusTooManyRequests))
		Expect(fresh.Body["error"]).To(Equal("slow_down"))
		Expect(fresh.Header.Get("Retry-After")).To(MatchRegexp(`^[0-9]+$`))
		wait, _ := time.ParseDuration(fresh.Header.Get("Retry-After") + "s")
		Expect(wait).To(BeNumerically("<=", 2*time.Hour))
	})

	It("counts passwords sent with an invitation as login attempts of the account", func(ctx SpecContext) {
		first, second := organization(ctx, "invthrottle"), organization(ctx, "invthrottle")
		activeMember(ctx, first, "ingrid@example.com", tenancyv1.RoleMember)
		_, token := member(ctx, second, "ingrid@example.com", tenancyv1.RoleMember)
		Expect(token).NotTo(BeEmpty())
		var codes []int
		for range 12 {
			r := postJSON(base, "/auth/invitations/accept", map[string]string{"token": token, "password": "guess"},
				"X-Forwarded-For", "203.0.113.20")
			codes = append(codes, r.StatusCode)
		}
		// Ten free failures, an eleventh that starts the wait, and a twelfth that waits.
		Expect(codes[:11]).To(HaveEach(http.StatusUnauthorized))
		Expect(codes[11]).To(Equal(http.StatusTooManyRequests))
		Expect(loginFrom("203.0.113.20", "ingrid@example.com", password, first.Name).StatusCode).
			To(Equal(http.StatusTooManyRequests), "the same account's login from that address waits too")
	})

	It("slows down an address that guesses at keys of another shape (imported keys may be short)", func() {
		trade := func(address, secret string) response {
			form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {secret}}
			req, err := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", address)
			return do(req)
		}
		var codes []int
		for i := range 12 {
			codes = append(codes, trade("203.0.113.30", fmt.Sprintf("sk_live_guess%d", i)).StatusCode)
		}
		// Ten free misses, an eleventh that starts the wait, and a twelfth that waits.
		Expect(codes[:11]).To(HaveEach(http.StatusUnauthorized))
		Expect(codes[11]).To(Equal(http.StatusTooManyRequests))
		slowed := trade("203.0.113.30", "sk_live_another")
		Expect(slowed.Body["error"]).To(Equal("slow_down"))
		Expect(slowed.Header.Get("Retry-After")).To(MatchRegexp(`^[0-9]+$`))
		Expect(trade("198.51.100.30", "sk_live_guess").StatusCode).To(Equal(http.StatusUnauthorized), "another address is not slowed down")
	})
})

var _ = Describe("JSON endpoints", func() {
	It("refuse a body that is not declared JSON with 415", func() {
		for _, path := range []string{"/auth/login", "/auth/invitations/accept", "/auth/signup", "/auth/refresh"} {
			req, err := http.NewRequest(http.MethodPost, authdURL+path, strings.NewReader(`{"email":"a@example.com","password":"x"}`))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "text/plain")
			r := do(req)
			Expect(r.StatusCode).To(Equal(http.StatusUnsupportedMediaType), path)
			Expect(r.Body["error"]).To(Equal("invalid_request"))
		}
		req, err := http.NewRequest(http.MethodPost, authdURL+"/auth/login", strings.NewReader(`{}`))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		Expect(do(req).StatusCode).To(Equal(http.StatusBadRequest), "declared JSON goes on to the handler")
	})
})
