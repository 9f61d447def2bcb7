package webhooks_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("Vouching for a member's email", func() {
	It("is a platform admin's to do, never an Owner's", func(ctx SpecContext) {
		org := newOrganization(ctx, "vouch", tenancyv1.TierPro)
		ns := org.Name
		Expect(admin.Create(ctx, membership(ns, "owner", owner, tenancyv1.RoleOwner, ""))).To(Succeed())
		Eventually(func() error { // the Owner's RoleBinding follows the membership
			return as(owner).Create(ctx, membership(ns, "probe", "probe@example.com", tenancyv1.RoleViewer, ""), client.DryRunAll)
		}).WithContext(ctx).Should(Succeed())
		vouched := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"true"}}}`, tenancyv1.EmailVerifiedAnnotation)

		By("an Owner may not create a vouched membership, nor vouch for an existing one")
		m := membership(ns, "cfo", "cfo@example.com", tenancyv1.RoleMember, "")
		m.Annotations = map[string]string{tenancyv1.EmailVerifiedAnnotation: "true"}
		err := as(owner).Create(ctx, m.DeepCopy())
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(
			"metadata.annotations[tenancy.dev/email-verified]: Forbidden: alice@example.com is not a platform admin")))
		plain := membership(ns, "cfo", "cfo@example.com", tenancyv1.RoleMember, "")
		Expect(as(owner).Create(ctx, plain)).To(Succeed())
		err = as(owner).Patch(ctx, plain, client.RawPatch("application/merge-patch+json", vouched))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)

		By("a platform admin may")
		Expect(admin.Patch(ctx, plain, client.RawPatch("application/merge-patch+json", vouched))).To(Succeed())
		Expect(plain.Annotations).To(HaveKeyWithValue(tenancyv1.EmailVerifiedAnnotation, "true"))
	})
})
