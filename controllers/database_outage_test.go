package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("Database outage", Serial, func() {
	It("reports DatabaseUnavailable while PostgreSQL is unreachable, then converges without duplicates", func(ctx SpecContext) {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("outage")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)

		dbProxy.Cut()
		restored := false
		DeferCleanup(func() {
			if !restored {
				dbProxy.Restore()
			}
		})

		Expect(patchSpec(ctx, org, func(o *tenancyv1.Organization) { o.Spec.Tier = tenancyv1.TierPro })).To(Succeed())
		proj := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "during-outage", Namespace: org.Name}}
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())

		// A resync of the old generation may report the outage first: wait for the patched one's.
		Eventually(func(g Gomega) {
			cond := eventuallyCondition(ctx, org, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.DatabaseUnavailableReason)
			g.Expect(cond.ObservedGeneration).To(Equal(org.Generation))
		}).WithContext(ctx).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(org.Status.Conditions, tenancyv1.ReconcilingCondition)).To(BeTrue())
		Expect(org.Status.ObservedGeneration).To(BeNumerically("<", org.Generation), "a failed generation is not observed")
		Expect(kstatusOf(org)).To(Equal(kstatus.InProgressStatus), "an outage is progress to wait for, not a failure")
		eventuallyCondition(ctx, proj, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.DatabaseUnavailableReason)

		dbProxy.Restore()
		restored = true
		eventuallyReady(ctx, org)
		eventuallyReady(ctx, proj)

		Expect(organizationRow(ctx, "o.uid = $1", string(org.UID))).To(HaveField("Tier", "Pro"))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE uid = $1", string(proj.UID))).To(Equal(1))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE organization_id = $1", org.Status.ID)).To(Equal(1))
	})
})
