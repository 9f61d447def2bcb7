package authd_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// Verification and password reset, with the mail read from Mailpit and its links followed.
var _ = Describe("Mail: verified addresses and password reset", Ordered, func() {
	var (
		mailpit *testenv.Mailpit
		base    string // an authd that mails through Mailpit
	)
	BeforeAll(func() {
		mailpit = testenv.StartMailpit(GinkgoT())
		smtp := mailpit.SMTPConfig()
		conf := suiteConf
		conf.SMTP = &smtp
		// X-Forwarded-For names the client, so that specs sign in from other addresses.
		conf.Throttle.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		conf.Throttle.FamiliarFor = 24 * time.Hour
		base = startAuthd(conf)
		Eventually(func() int { return getFrom(base, "/readyz").StatusCode }).Should(Equal(http.StatusOK))
	})

	// mailedLink waits for the mail to address whose subject holds subject, and returns its link
	// to page and the token in it.
	mailedLink := func(ctx context.Context, address, subject, page string) (string, string) {
		GinkgoHelper()
		msg := mailpit.WaitForMessage(GinkgoT(), ctx, address, subject)
		detail, err := mailpit.Message(ctx, msg.ID)
		Expect(err).NotTo(HaveOccurred())
		link, ok := testenv.FirstLink(detail.Text, base+page+"?token=")
		Expect(ok).To(BeTrue(), "the mail links to %s: %s", page, detail.Text)
		Expect(detail.HTML).To(ContainSubstring(`href="` + link + `"`))
		return link, strings.TrimPrefix(link, base+page+"?token=")
	}

	It("mails a new account a link that verifies its address, once", func(ctx SpecContext) {
		email := uniqueName("verify") + "@example.com"
		signup := postJSON(base, "/auth/signup", map[string]string{"email": email, "password": password})
		Expect(signup.StatusCode).To(Equal(http.StatusCreated), signup.Raw)
		bearer := "Bearer " + signup.Body["access_token"].(string)
		Expect(getFrom(base, "/auth/me", "Authorization", bearer).Body["user"]).To(HaveKeyWithValue("email_verified", false))

		link, token := mailedLink(ctx, email, "Confirm your email address", "/verify")
		// Opening the link (as a mail scanner would) only shows the form.
		page := getFrom(base, strings.TrimPrefix(link, base))
		Expect(page.StatusCode).To(Equal(http.StatusOK))
		Expect(page.Raw).To(ContainSubstring(`id="verify-form"`))
		Expect(getFrom(base, "/auth/me", "Authorization", bearer).Body["user"]).To(HaveKeyWithValue("email_verified", false))

		Expect(postJSON(base, "/auth/email/verify", map[string]string{"token": token}).StatusCode).To(Equal(http.StatusNoContent))
		Expect(getFrom(base, "/auth/me", "Authorization", bearer).Body["user"]).To(HaveKeyWithValue("email_verified", true))
		Eventually(func() []string { return actions(ctx, email) }).WithContext(ctx).Should(ContainElement("user.email_verified"))

		again := postJSON(base, "/auth/email/verify", map[string]string{"token": token})
		Expect(again.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(again.Body).To(HaveKeyWithValue("error", "invalid_token"))
		Expect(postJSON(base, "/api/v1/me/email/verification", nil, "Authorization", bearer).StatusCode).To(Equal(http.StatusConflict))
	})

	It("answers a reset request the same for every address, and mails only the account's", func(ctx SpecContext) {
		email := uniqueName("forgot") + "@example.com"
		Expect(postJSON(base, "/auth/signup", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusCreated))
		nobody := uniqueName("nobody") + "@example.com"

		known := postJSON(base, "/auth/password/forgot", map[string]string{"email": strings.ToUpper(email)})
		unknown := postJSON(base, "/auth/password/forgot", map[string]string{"email": nobody})
		Expect(known.StatusCode).To(Equal(http.StatusAccepted))
		Expect(unknown.StatusCode).To(Equal(http.StatusAccepted))
		Expect(unknown.Raw).To(Equal(known.Raw))

		mailpit.WaitForMessage(GinkgoT(), ctx, email, "Reset your password")
		all, err := mailpit.Messages(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, m := range all {
			Expect(m.SentTo(nobody)).To(BeFalse(), "mail went to an address without an account")
		}

		bad := postJSON(base, "/auth/password/forgot", map[string]string{"email": "not-an-address"})
		Expect(bad.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(bad.Raw).To(ContainSubstring(`"field":"email"`))
	})

	It("resets a forgotten password with the mailed link, once, ending every session", func(ctx SpecContext) {
		email := uniqueName("reset") + "@example.com"
		signup := postJSON(base, "/auth/signup", map[string]string{"email": email, "password": password})
		Expect(signup.StatusCode).To(Equal(http.StatusCreated))
		refresh := signup.Body["refresh_token"].(string)

		Expect(postJSON(base, "/auth/password/forgot", map[string]string{"email": email}).StatusCode).To(Equal(http.StatusAccepted))
		link, token := mailedLink(ctx, email, "Reset your password", "/reset")
		page := getFrom(base, strings.TrimPrefix(link, base))
		Expect(page.StatusCode).To(Equal(http.StatusOK))
		Expect(page.Raw).To(ContainSubstring(email))

		short := postJSON(base, "/auth/password/reset", map[string]string{"token": token, "password": "short"})
		Expect(short.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(short.Raw).To(ContainSubstring(`"field":"password"`))
		// A reset token is no verification token.
		Expect(postJSON(base, "/auth/email/verify", map[string]string{"token": token}).Body).To(HaveKeyWithValue("error", "invalid_token"))

		const newPassword = "a brand new passphrase"
		Expect(postJSON(base, "/auth/password/reset", map[string]string{"token": token, "password": newPassword}).StatusCode).
			To(Equal(http.StatusNoContent))
		used := postJSON(base, "/auth/password/reset", map[string]string{"token": token, "password": "yet another passphrase"})
		Expect(used.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(used.Body).To(HaveKeyWithValue("error", "invalid_token"))

		ended := postJSON(base, "/auth/refresh", map[string]string{"refresh_token": refresh})
		Expect(ended.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(ended.Body).To(HaveKeyWithValue("error", "invalid_grant"), "the session from before the reset ended")
		Expect(postJSON(base, "/auth/login", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusUnauthorized))
		fresh := postJSON(base, "/auth/login", map[string]string{"email": email, "password": newPassword})
		Expect(fresh.StatusCode).To(Equal(http.StatusOK))
		Expect(getFrom(base, "/auth/me", "Authorization", "Bearer "+fresh.Body["access_token"].(string)).Body["user"]).
			To(HaveKeyWithValue("email_verified", true), "the reset link proved the address")
		Eventually(func() []string { return actions(ctx, email) }).WithContext(ctx).Should(ContainElements("password.reset_requested", "password.reset"))

		notice := mailpit.WaitForMessage(GinkgoT(), ctx, email, "Your password was changed")
		Expect(notice.Subject).To(Equal("Your password was changed"))
		var bodies []string
		Expect(sqlPool.QueryRow(ctx, `SELECT array_agg(coalesce(body_text, '')) FROM tenancy.mail_outbox WHERE recipient = $1 AND sent_at IS NOT NULL`, email).
			Scan(&bodies)).To(Succeed())
		Expect(strings.Join(bodies, "")).To(BeEmpty(), "sent mails keep no links in the database")
	})

	It("refuses an expired reset link, and mails at most three links per quarter hour", func(ctx SpecContext) {
		email := uniqueName("expire") + "@example.com"
		Expect(postJSON(base, "/auth/signup", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusCreated))
		Expect(postJSON(base, "/auth/password/forgot", map[string]string{"email": email}).StatusCode).To(Equal(http.StatusAccepted))
		_, token := mailedLink(ctx, email, "Reset your password", "/reset")
		_, err := sqlPool.Exec(ctx, `UPDATE tenancy.email_tokens SET expires_at = now() - interval '1 second'
			WHERE user_id = (SELECT id FROM tenancy.users WHERE email = $1)`, email)
		Expect(err).NotTo(HaveOccurred())
		expired := postJSON(base, "/auth/password/reset", map[string]string{"token": token, "password": "a brand new passphrase"})
		Expect(expired.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(expired.Body).To(HaveKeyWithValue("error", "invalid_token"))
		Expect(getFrom(base, "/reset?token="+token).StatusCode).To(Equal(http.StatusNotFound))

		for range 4 {
			Expect(postJSON(base, "/auth/password/forgot", map[string]string{"email": email}).StatusCode).To(Equal(http.StatusAccepted))
		}
		var tokens int
		Expect(sqlPool.QueryRow(ctx, `SELECT count(*) FROM tenancy.email_tokens t JOIN tenancy.users u ON u.id = t.user_id
			WHERE u.email = $1 AND t.purpose = 'password_reset'`, email).Scan(&tokens)).To(Succeed())
		Expect(tokens).To(Equal(3))
	})

	It("mails a notice of a sign-in from an address the account never used, once", func(ctx SpecContext) {
		email := uniqueName("traveller") + "@example.com"
		Expect(postJSON(base, "/auth/signup", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusCreated))
		credentials := map[string]string{"email": email, "password": password}
		Expect(postJSON(base, "/auth/login", credentials).StatusCode).To(Equal(http.StatusOK), "from the signup's address")
		for range 2 {
			Expect(postJSON(base, "/auth/login", credentials, "X-Forwarded-For", "203.0.113.9", "User-Agent", "Firefox on Linux").StatusCode).
				To(Equal(http.StatusOK))
		}
		notice := mailpit.WaitForMessage(GinkgoT(), ctx, email, "New sign-in to your account")
		detail, err := mailpit.Message(ctx, notice.ID)
		Expect(err).NotTo(HaveOccurred())
		Expect(detail.Text).To(ContainSubstring("from 203.0.113.9 (Firefox on Linux)"))
		Eventually(func() int {
			return countOutbox(ctx, email, "new_sign_in")
		}).Should(Equal(1), "the second sign-in from that address is familiar")
		Consistently(func() int { return countOutbox(ctx, email, "new_sign_in") }).WithTimeout(time.Second).Should(Equal(1))
	})

	It("answers 503 mail_disabled where mail is needed and authd has no SMTP server", func() {
		r := postJSON(authdURL, "/auth/password/forgot", map[string]string{"email": "someone@example.com"})
		Expect(r.StatusCode).To(Equal(http.StatusServiceUnavailable))
		Expect(r.Body).To(HaveKeyWithValue("error", "mail_disabled"))
		Expect(get("/login").Raw).NotTo(ContainSubstring(`id="forgot-link"`))
		Expect(getFrom(base, "/login").Raw).To(ContainSubstring(`id="forgot-link"`))
	})
})

// The suite's manager sends no mail: what invitations do then, and what authd does with one
// that was mailed.
var _ = Describe("Invitation delivery", func() {
	It("stalls a Membership that asks for delivery by Email when the operator sends no mail", func(ctx SpecContext) {
		org := organization(ctx, "nomail")
		m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: "emailed"},
			Spec: tenancyv1.MembershipSpec{User: "emailed@example.com", Invitation: &tenancyv1.InvitationSpec{Delivery: tenancyv1.InvitationByEmail}}}
		Expect(kube.Create(ctx, m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(kube.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
			stalled := meta.FindStatusCondition(m.Status.Conditions, tenancyv1.StalledCondition)
			g.Expect(stalled).NotTo(BeNil())
			g.Expect(stalled.Reason).To(Equal("MailNotConfigured"))
			g.Expect(stalled.Message).To(ContainSubstring("spec.invitation.delivery is Email"))
		}).WithContext(ctx).Should(Succeed())
		err := kube.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: "emailed-invite"}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no Secret, no invitation: nobody could receive it (got %v)", err)

		before := m.DeepCopy()
		m.Spec.Invitation.Delivery = tenancyv1.InvitationByLink
		Expect(kube.Patch(ctx, m, client.MergeFrom(before))).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(m.Status.InviteSecretName).To(Equal("emailed-invite"))
	})

	It("verifies the user who accepts an invitation that was mailed, and only then", func(ctx SpecContext) {
		org := organization(ctx, "mailedinv")
		linked, linkToken := member(ctx, org, uniqueName("linked")+"@example.com", tenancyv1.RoleMember)
		Expect(postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": linkToken, "password": password}).StatusCode).To(Equal(http.StatusOK))
		Expect(me(linked.Spec.User)).To(HaveKeyWithValue("email_verified", false),
			"a link that sat in a Secret others read proves nothing")

		mailedMember, token := member(ctx, org, uniqueName("mailed")+"@example.com", tenancyv1.RoleMember)
		// What the manager records when it mails the token (the controllers suite sends real mail).
		_, err := sqlPool.Exec(ctx, `UPDATE tenancy.invitations SET emailed = true WHERE hash = sha256($1::bytea)`, []byte(token))
		Expect(err).NotTo(HaveOccurred())
		Expect(postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password}).StatusCode).To(Equal(http.StatusOK))
		Expect(me(mailedMember.Spec.User)).To(HaveKeyWithValue("email_verified", true))
		Eventually(func() []string { return actions(ctx, mailedMember.Spec.User) }).WithContext(ctx).Should(ContainElement("user.email_verified"))
	})
})

// countOutbox counts the mails of kind to email in the outbox.
func countOutbox(ctx context.Context, email, kind string) int {
	GinkgoHelper()
	var n int
	Expect(sqlPool.QueryRow(ctx, `SELECT count(*) FROM tenancy.mail_outbox WHERE recipient = $1 AND kind = $2`, email, kind).Scan(&n)).To(Succeed())
	return n
}

// me logs email in (with extra, key and value pairs, in the login body) and answers the user of /auth/me.
func me(email string, extra ...string) map[string]any {
	GinkgoHelper()
	body := map[string]string{"email": email, "password": password}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	tokens := postJSON(authdURL, "/auth/login", body)
	Expect(tokens.StatusCode).To(Equal(http.StatusOK), tokens.Raw)
	answer := get("/auth/me", "Authorization", "Bearer "+tokens.Body["access_token"].(string))
	Expect(answer.StatusCode).To(Equal(http.StatusOK), answer.Raw)
	return answer.Body["user"].(map[string]any)
}
