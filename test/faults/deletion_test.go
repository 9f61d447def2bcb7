package faults_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// holdFinalizer stands for another controller (a backup tool, say) that is down and holds an
// Organization in deletion after the operator has removed its rows.
const holdFinalizer = "faults.tenancy.dev/hold"

var _ = Describe("An organization held in deletion", func() {
	It("makes its objects wait, saying so, and issues no key against its removed row", func(ctx SpecContext) {
		s := newStack(ctx, newDatabase(ctx))
		s.startManager("manager", managerOptions{resyncPeriod: 2 * time.Second})
		s.waitForWebhooks(ctx)
		org := organization("held")
		org.Finalizers = []string{holdFinalizer}
		Expect(applyAll(ctx, s.kube, []client.Object{org})).To(Succeed())
		Expect(applyAll(ctx, s.kube, tenantObjects("held", 1))).To(Succeed())
		Eventually(func(g Gomega) { expectAllReady(g, ctx, s.kube) }).WithContext(ctx).Should(Succeed())
		key := &tenancyv1.APIKey{}
		Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: "held", Name: "ci"}, key)).To(Succeed())

		By("deleting the organization: the operator removes its rows, the other finalizer keeps it")
		Expect(s.kube.Delete(ctx, org)).To(Succeed())
		Eventually(func() int {
			return countRows(ctx, s, "SELECT count(*) FROM tenancy.organizations WHERE name = 'held'")
		}).WithContext(ctx).Should(BeZero())
		Eventually(func(g Gomega) {
			g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Finalizers).To(Equal([]string{holdFinalizer}))
		}).WithContext(ctx).Should(Succeed())

		By("reading the objects in its namespace, which plain envtest never deletes")
		for _, obj := range tenantObjects("held", 1) {
			Eventually(func(g Gomega) {
				g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
				ready := meta.FindStatusCondition(obj.(tenancyv1.Object).CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
				g.Expect(ready).NotTo(BeNil())
				g.Expect(ready.Reason).To(Equal(tenancyv1.OrganizationNotReadyReason), ready.Message)
				g.Expect(ready.Message).To(ContainSubstring("Organization held is being deleted"))
			}).WithContext(ctx).Should(Succeed(), "%s %s", kindOf(obj), obj.GetName())
		}
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1", string(key.UID))).To(Equal(1),
			"no key issued after the organization's removal revoked the first")
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.api_keys WHERE revoked_at IS NULL")).To(BeZero())

		By("releasing the organization")
		Expect(s.kube.Patch(ctx, org, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		Eventually(func() error {
			return s.kube.Get(ctx, client.ObjectKeyFromObject(org), org)
		}).WithContext(ctx).Should(MatchError(ContainSubstring("not found")))
	}, SpecTimeout(3*time.Minute))
})
