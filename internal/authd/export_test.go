package authd_test

import (
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("The account export", func() {
	It("holds everything about the caller, no secret, and nothing about anyone else", func(ctx SpecContext) {
		org := organization(ctx, "export")
		alice, bob := uniqueName("alice")+"@example.com", uniqueName("bob")+"@example.com"
		activeMember(ctx, org, alice, tenancyv1.RoleAdmin)
		activeMember(ctx, org, bob, tenancyv1.RoleMember)
		bearer := "Bearer " + login(alice, org.Name)["access_token"].(string)
		login(bob, org.Name)

		// The audit writer works in batches: the export reads what it has written.
		Eventually(func() []string { return actions(ctx, alice) }).WithContext(ctx).Should(ContainElements("invitation.accepted", "login.succeeded"))
		export := get("/api/v1/me/export", "Authorization", bearer)
		Expect(export.StatusCode).To(Equal(http.StatusOK), export.Raw)
		Expect(export.Header.Get("Content-Disposition")).To(HavePrefix("attachment"))
		Expect(export.Body["account"]).To(And(HaveKeyWithValue("email", alice), HaveKeyWithValue("has_password", true)))
		Expect(export.Body["memberships"]).To(ContainElement(And(HaveKeyWithValue("organization", org.Name), HaveKeyWithValue("role", "Admin"))))
		Expect(export.Body["sessions"]).NotTo(BeEmpty())
		var done []string
		for _, row := range export.Body["audit"].([]any) {
			done = append(done, row.(map[string]any)["action"].(string))
		}
		Expect(done).To(ContainElements("invitation.accepted", "login.succeeded"))
		for _, key := range []string{"mail", "emailed_links"} {
			Expect(export.Body[key]).To(BeAssignableToTypeOf([]any{}), "%s: a list, empty rather than null", key)
		}

		Expect(export.Raw).NotTo(ContainSubstring(bob), "another member's rows")
		Expect(export.Raw).NotTo(ContainSubstring("$argon2id"), "the password hash")
		Expect(export.Raw).NotTo(ContainSubstring("tnr_"), "a refresh token")
		Eventually(func() []string { return actions(ctx, alice) }).WithContext(ctx).Should(ContainElement("user.exported"))
	})
})
