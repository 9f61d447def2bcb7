package authd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/pquerna/otp/totp"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("Two-factor authentication", func() {
	// enrol signs email up with an authenticator, and answers its secret, the recovery codes and
	// the time whose code confirmed it (the next login needs a later step).
	enrol := func(bearer string) (string, []string) {
		GinkgoHelper()
		start := postJSON(authdURL, "/api/v1/me/mfa/totp", nil, "Authorization", bearer)
		Expect(start.StatusCode).To(Equal(http.StatusOK), start.Raw)
		secret := start.Body["secret"].(string)
		Expect(start.Body["otpauth_uri"]).To(HavePrefix("otpauth://totp/"))

		wrong := postJSON(authdURL, "/api/v1/me/mfa/totp/confirm", map[string]string{"code": "000000"}, "Authorization", bearer)
		Expect(wrong.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(wrong.Raw).To(ContainSubstring(`"field":"code"`))
		confirm := postJSON(authdURL, "/api/v1/me/mfa/totp/confirm", map[string]string{"code": codeAt(secret, time.Now())}, "Authorization", bearer)
		Expect(confirm.StatusCode).To(Equal(http.StatusOK), confirm.Raw)
		var codes []string
		for _, c := range confirm.Body["recovery_codes"].([]any) {
			codes = append(codes, c.(string))
		}
		Expect(codes).To(HaveLen(10))
		return secret, codes
	}

	It("asks for the code at login, refuses a wrong or replayed one, and takes a recovery code once", func(ctx SpecContext) {
		org := organization(ctx, "mfa")
		email := uniqueName("mfa") + "@example.com"
		activeMember(ctx, org, email, tenancyv1.RoleMember)
		first := login(email, "")
		Expect(claimsOf(first)["amr"]).To(ConsistOf("pwd"))
		bearer := "Bearer " + first["access_token"].(string)
		secret, codes := enrol(bearer)
		// Codes from fixed instants: the specs must not depend on when a 30-second step ends.
		enrolled := time.Now()
		used := codeAt(secret, enrolled.Add(30*time.Second))
		Expect(me(email, "otp", used)).To(HaveKeyWithValue("mfa_enabled", true))
		Expect(postJSON(authdURL, "/api/v1/me/mfa/totp", nil, "Authorization", bearer).StatusCode).To(Equal(http.StatusConflict),
			"a second enrolment needs the first turned off")

		credentials := map[string]string{"email": email, "password": password}
		missing := postJSON(authdURL, "/auth/login", credentials)
		Expect(missing.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(missing.Body).To(HaveKeyWithValue("error", "mfa_required"))

		credentials["otp"] = "123456"
		Expect(postJSON(authdURL, "/auth/login", credentials).Body).To(HaveKeyWithValue("error", "invalid_otp"))
		// The code me() just used, and the one of every earlier step, never works again.
		credentials["otp"] = used
		Expect(postJSON(authdURL, "/auth/login", credentials).Body).To(HaveKeyWithValue("error", "invalid_otp"), "replay")
		credentials["otp"] = codeAt(secret, enrolled)
		Expect(postJSON(authdURL, "/auth/login", credentials).Body).To(HaveKeyWithValue("error", "invalid_otp"), "an earlier step")

		delete(credentials, "otp")
		credentials["recovery_code"] = codes[3]
		withRecovery := postJSON(authdURL, "/auth/login", credentials)
		Expect(withRecovery.StatusCode).To(Equal(http.StatusOK), withRecovery.Raw)
		Expect(claimsOf(withRecovery.Body)["amr"]).To(ConsistOf("pwd", "otp"))
		Expect(postJSON(authdURL, "/auth/login", credentials).Body).To(HaveKeyWithValue("error", "invalid_otp"), "a recovery code works once")
		Eventually(func() []string { return actions(ctx, email) }).WithContext(ctx).Should(ContainElements("mfa.enrolled", "mfa.recovery_code_used"))

		// Refreshing keeps the session's second factor.
		refreshed := postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": withRecovery.Body["refresh_token"].(string)})
		Expect(refreshed.StatusCode).To(Equal(http.StatusOK))
		Expect(claimsOf(refreshed.Body)["amr"]).To(ConsistOf("pwd", "otp"))

		// Turning it off takes a code: a stolen session alone cannot.
		mfaBearer := "Bearer " + withRecovery.Body["access_token"].(string)
		Expect(deleteJSON("/api/v1/me/mfa/totp", map[string]string{}, mfaBearer).Raw).To(ContainSubstring(`"error_description":"code: required`))
		Expect(deleteJSON("/api/v1/me/mfa/totp", map[string]string{"recovery_code": codes[3]}, mfaBearer).Raw).
			To(ContainSubstring(`"error_description":"code: wrong, expired or already used"`), "a used recovery code")
		Expect(deleteJSON("/api/v1/me/mfa/totp", map[string]string{"recovery_code": codes[4]}, mfaBearer).StatusCode).To(Equal(http.StatusNoContent))
		Expect(postJSON(authdURL, "/auth/login", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusOK))
	})

	It("serves an organization with requireMFA only to sessions that began with a second factor", func(ctx SpecContext) {
		org := organization(ctx, "strict")
		plain := uniqueName("plain") + "@example.com"
		strong := uniqueName("strong") + "@example.com"
		activeMember(ctx, org, plain, tenancyv1.RoleAdmin)
		activeMember(ctx, org, strong, tenancyv1.RoleAdmin)
		plainSession := login(plain, org.Name)
		secret, _ := enrol("Bearer " + login(strong, org.Name)["access_token"].(string))

		before := org.DeepCopy()
		org.Spec.RequireMFA = true
		Expect(kube.Patch(ctx, org, client.MergeFrom(before))).To(Succeed())
		Eventually(func() int {
			return postJSON(authdURL, "/auth/login", map[string]string{"email": plain, "password": password, "organization": org.Name}).StatusCode
		}).Should(Equal(http.StatusForbidden))
		refused := postJSON(authdURL, "/auth/login", map[string]string{"email": plain, "password": password, "organization": org.Name})
		Expect(refused.Body).To(HaveKeyWithValue("error", "mfa_enrollment_required"))
		Expect(refused.Body["error_description"]).To(ContainSubstring("requires two-factor authentication"))

		// A session from before keeps its refresh token, but no new token for the organization.
		moved := postJSON(authdURL, "/auth/refresh", map[string]string{"refresh_token": plainSession["refresh_token"].(string)})
		Expect(moved.StatusCode).To(Equal(http.StatusForbidden))
		Expect(moved.Body).To(HaveKeyWithValue("error", "mfa_enrollment_required"))
		// Nor does its access token open the organization's self-service API.
		members := get("/api/v1/organizations/"+org.Name+"/members", "Authorization", "Bearer "+plainSession["access_token"].(string))
		Expect(members.StatusCode).To(Equal(http.StatusForbidden))
		Expect(members.Body).To(HaveKeyWithValue("error", "mfa_enrollment_required"))

		strongSession := postJSON(authdURL, "/auth/login", map[string]string{"email": strong, "password": password, "organization": org.Name,
			"otp": codeAt(secret, time.Now().Add(30*time.Second))})
		Expect(strongSession.StatusCode).To(Equal(http.StatusOK), strongSession.Raw)
		Expect(get("/api/v1/organizations/"+org.Name+"/members", "Authorization", "Bearer "+strongSession.Body["access_token"].(string)).StatusCode).
			To(Equal(http.StatusOK))
	})

	It("needs the second factor to accept an invitation with the account's password", func(ctx SpecContext) {
		home := organization(ctx, "mfahome")
		email := uniqueName("careful") + "@example.com"
		activeMember(ctx, home, email, tenancyv1.RoleMember)
		_, codes := enrol("Bearer " + login(email, "")["access_token"].(string))
		other := organization(ctx, "mfaother")
		_, token := member(ctx, other, email, tenancyv1.RoleMember)
		Expect(token).NotTo(BeEmpty(), "the user is unverified: the membership waits for its invitation")
		withoutCode := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password})
		Expect(withoutCode.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(withoutCode.Body).To(HaveKeyWithValue("error", "mfa_required"))
		accepted := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password, "recovery_code": codes[0]})
		Expect(accepted.StatusCode).To(Equal(http.StatusOK), accepted.Raw)
		Expect(claimsOf(accepted.Body)["amr"]).To(ConsistOf("pwd", "otp"))
	})
})

// codeAt is the TOTP code of secret at t.
func codeAt(secret string, t time.Time) string {
	GinkgoHelper()
	code, err := totp.GenerateCode(secret, t)
	Expect(err).NotTo(HaveOccurred())
	return code
}

// claimsOf reads the claims of a token response's access token, unverified (other specs verify).
func claimsOf(tokens map[string]any) jwt.MapClaims {
	GinkgoHelper()
	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(tokens["access_token"].(string), claims)
	Expect(err).NotTo(HaveOccurred())
	return claims
}

func deleteJSON(path string, body any, bearer string) response {
	GinkgoHelper()
	data, err := json.Marshal(body)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(context.Background(), http.MethodDelete, authdURL+path, bytes.NewReader(data))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", bearer)
	return do(req)
}
