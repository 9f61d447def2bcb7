package webhooks_test

import (
	"context"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("The last Owner", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = newOrganization(ctx, "owned", tenancyv1.TierPro)
	})

	owners := func(ctx context.Context, names ...string) []*tenancyv1.Membership {
		GinkgoHelper()
		var ms []*tenancyv1.Membership
		for _, name := range names {
			m := membership(org.Name, name, name+"@example.com", tenancyv1.RoleOwner, "")
			Expect(admin.Create(ctx, m)).To(Succeed())
			ms = append(ms, m)
		}
		for _, m := range ms {
			eventuallyReady(ctx, m)
		}
		return ms
	}
	demote := func(ctx context.Context, m *tenancyv1.Membership, opts ...client.PatchOption) error {
		changed := m.DeepCopy()
		changed.Spec.Role = tenancyv1.RoleAdmin
		return admin.Patch(ctx, changed, client.MergeFrom(m), opts...)
	}
	noOwnerLeft := func(err error) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.role: Forbidden: " + org.Name +
			" would have no Owner left: make another member Owner first, or delete the Organization to end it"))
	}

	It("cannot be removed or demoted, by a platform admin either, dry run included", func(ctx SpecContext) {
		last := owners(ctx, "olga")[0]
		for _, opts := range [][]client.DeleteOption{{client.DryRunAll}, nil} {
			err := admin.Delete(ctx, last, opts...)
			noOwnerLeft(err)
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a refused deletion is Forbidden: %v", err)
		}
		noOwnerLeft(demote(ctx, last, client.DryRunAll))
		noOwnerLeft(demote(ctx, last))
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(last), last)).To(Succeed())
		Expect(last.Spec.Role).To(Equal(tenancyv1.RoleOwner))

		By("with a second Owner, either may go, but not both")
		second := owners(ctx, "oscar")[0]
		Expect(demote(ctx, last, client.DryRunAll)).To(Succeed())
		Expect(demote(ctx, last)).To(Succeed())
		noOwnerLeft(admin.Delete(ctx, second))
	})

	It("survives two Owners demoted at the same time", func(ctx SpecContext) {
		for round := range 4 {
			if round > 0 {
				org = newOrganization(ctx, "owned", tenancyv1.TierPro)
			}
			pair := owners(ctx, "p", "q")
			var wg sync.WaitGroup
			errs := make([]error, len(pair))
			for i, m := range pair {
				wg.Go(func() {
					defer GinkgoRecover()
					if round%2 == 1 {
						errs[i] = admin.Delete(ctx, m)
					} else {
						errs[i] = demote(ctx, m)
					}
				})
			}
			wg.Wait()
			refused := 0
			for _, err := range errs {
				if err != nil {
					noOwnerLeft(err)
					refused++
				}
			}
			Expect(refused).To(Equal(1), "round %d: exactly one of two concurrent removals is refused: %v", round, errs)
		}
	})
})
