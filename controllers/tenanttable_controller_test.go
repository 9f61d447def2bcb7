package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("TenantTable controller", func() {
	policies := func(ctx SpecContext, table string) int {
		return countRows(ctx, "SELECT count(*) FROM pg_policies WHERE schemaname = 'public' AND tablename = $1 AND policyname LIKE 'tenancy_%'", table)
	}
	forced := func(ctx SpecContext, table string) bool {
		var rls, force bool
		Expect(sqlPool.QueryRow(ctx, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass", "public."+table).
			Scan(&rls, &force)).To(Succeed())
		return rls && force
	}

	It("waits for its table, protects it, restores what is changed by hand, and leaves it closed", func(ctx SpecContext) {
		name := uniqueName("orders")
		table := "orders_" + name[len("orders-"):]
		tt := &tenancyv1.TenantTable{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: tenancyv1.TenantTableSpec{Table: table}}
		Expect(k8sClient.Create(ctx, tt)).To(Succeed())
		stall := eventuallyCondition(ctx, tt, tenancyv1.StalledCondition, metav1.ConditionTrue, "TableNotFound")
		Expect(stall.Message).To(ContainSubstring("table public." + table + " does not exist"))
		Expect(kstatusOf(tt)).To(BeEquivalentTo("Failed"))

		_, err := sqlPool.Exec(ctx, "CREATE TABLE public."+table+" (id serial PRIMARY KEY, org_id uuid NOT NULL)")
		Expect(err).NotTo(HaveOccurred())
		eventuallyReady(ctx, tt)
		Expect(tt.Status.Policies).To(Equal([]string{"tenancy_select", "tenancy_insert", "tenancy_update", "tenancy_delete"}))
		Expect(tt.Status.Warnings).To(ContainElement(ContainSubstring("column org_id has no index")))
		Expect(policies(ctx, table)).To(Equal(4))
		Expect(forced(ctx, table)).To(BeTrue())

		_, err = sqlPool.Exec(ctx, "DROP POLICY tenancy_delete ON public."+table)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int { return policies(ctx, table) }).WithContext(ctx).Should(Equal(4))
		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace("default"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("InvolvedObject.UID", tt.UID), HaveField("Reason", "DriftRestored"))))
		}).WithContext(ctx).Should(Succeed())
		drift := eventuallyCondition(ctx, tt, tenancyv1.DriftRestoredCondition, metav1.ConditionTrue, "Restored")
		Expect(drift.Message).To(ContainSubstring("policy tenancy_delete changed outside the operator and put back"))
		Expect(kstatusOf(tt)).To(BeEquivalentTo("Current"), "a restored drift is news, not a failure")

		Expect(k8sClient.Delete(ctx, tt)).To(Succeed())
		eventuallyGone(ctx, tt)
		Expect(policies(ctx, table)).To(BeZero())
		Expect(forced(ctx, table)).To(BeTrue(), "without policies the table fails closed")
	})

	It("purges an organization's rows when its deletionPolicy is Delete, and keeps them with Retain", func(ctx SpecContext) {
		name := uniqueName("ledger")
		table := "ledger_" + name[len("ledger-"):]
		_, err := sqlPool.Exec(ctx, "CREATE TABLE public."+table+" (id serial PRIMARY KEY, org_id uuid NOT NULL)")
		Expect(err).NotTo(HaveOccurred())
		tt := &tenancyv1.TenantTable{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: tenancyv1.TenantTableSpec{Table: table}}
		Expect(k8sClient.Create(ctx, tt)).To(Succeed())
		eventuallyReady(ctx, tt)

		purged := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("purged")},
			Spec: tenancyv1.OrganizationSpec{DeletionPolicy: tenancyv1.DeletionPolicyDelete}}
		kept := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kept")}}
		for _, org := range []*tenancyv1.Organization{purged, kept} {
			Expect(k8sClient.Create(ctx, org)).To(Succeed())
			eventuallyReady(ctx, org)
			_, err := sqlPool.Exec(ctx, "INSERT INTO public."+table+" (org_id) VALUES ($1), ($1)", org.Status.ID)
			Expect(err).NotTo(HaveOccurred())
		}
		for _, org := range []*tenancyv1.Organization{purged, kept} {
			Expect(k8sClient.Delete(ctx, org)).To(Succeed())
			eventuallyGone(ctx, org)
		}
		rows := func(org *tenancyv1.Organization) int {
			return countRows(ctx, "SELECT count(*) FROM public."+table+" WHERE org_id = $1", org.Status.ID)
		}
		Expect(rows(purged)).To(BeZero())
		Expect(rows(kept)).To(Equal(2), "Retain keeps the tenant's data")
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'organization.data-purged' AND target = $1",
			"organization/"+purged.Name)).To(Equal(1))
	})
})
