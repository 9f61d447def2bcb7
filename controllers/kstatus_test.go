package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// What kubectl wait, Argo CD's and Flux's health checks and cli-utils read from our objects:
// kstatus computes Current, InProgress, Failed or Terminating from metadata.generation,
// status.observedGeneration and the Reconciling and Stalled conditions.
var _ = Describe("kstatus", func() {
	It("reads every new object as InProgress until the operator has looked at it, then Current", func(ctx SpecContext) {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		// The object as the create stored it, before any reconcile: without the CRD's status
		// default (observedGeneration -1) kstatus would call it Current.
		Expect(expectInProgress(org).Message).To(ContainSubstring("latest observed generation is -1"))
		eventuallyReady(ctx, org)

		tt := &tenancyv1.TenantTable{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus")},
			Spec: tenancyv1.TenantTableSpec{Table: "kstatus_absent"}}
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: org.Name}}
		member := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: org.Name},
			Spec: tenancyv1.MembershipSpec{User: "alice@kstatus.example"}}
		key := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: org.Name},
			Spec: tenancyv1.APIKeySpec{Role: tenancyv1.RoleViewer}}
		for _, obj := range []tenancyv1.Object{tt, project, member, key} {
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			Expect(expectInProgress(obj).Message).To(ContainSubstring("latest observed generation is -1"))
		}
		for _, obj := range []tenancyv1.Object{project, member, key} {
			eventuallyReady(ctx, obj)
		}
		DeferCleanup(func(ctx SpecContext) { Expect(k8sClient.Delete(ctx, tt)).To(Succeed()) })
	})

	It("reads a changed object as InProgress until its generation is reconciled", func(ctx SpecContext) {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus-gen")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)

		// The patch's response is the object as the change stored it, before the controller saw it.
		Expect(patchSpec(ctx, org, func(o *tenancyv1.Organization) { o.Spec.Tier = tenancyv1.TierPro })).To(Succeed())
		Expect(org.Generation).To(Equal(org.Status.ObservedGeneration + 1))
		expectInProgress(org)
		eventuallyReady(ctx, org)
	})

	It("reads an organization that waits for its namespace, with no row yet, as InProgress, then Current", func(ctx SpecContext) {
		// Plain envtest runs no namespace controller: a deleted namespace stays Terminating until
		// its finalizer is removed by hand.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus-leaving")}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		Expect(k8sClient.Delete(ctx, ns)).To(Succeed())

		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus-waiting")},
			Spec: tenancyv1.OrganizationSpec{Namespace: ns.Name}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyCondition(ctx, org, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, "NamespaceTerminating")
		expectInProgress(org)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.organizations WHERE name = $1", org.Name)).To(BeZero())

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		ns.Spec.Finalizers = nil
		Expect(k8sClient.SubResource("finalize").Update(ctx, ns)).To(Succeed())
		eventuallyReady(ctx, org)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.organizations WHERE name = $1", org.Name)).To(Equal(1))
	})

	It("reads a stalled object as Failed, and as Current once what it lacked exists", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus-unbound")}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: ns.Name}}
		Expect(k8sClient.Create(ctx, project)).To(Succeed())
		eventuallyCondition(ctx, project, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceNotBoundReason)
		result := kstatusResultOf(project)
		Expect(result.Status).To(Equal(kstatus.FailedStatus))
		Expect(result.Message).To(ContainSubstring("bound to no organization"), "the message tells what to do")

		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("kstatus-owner")},
			Spec: tenancyv1.OrganizationSpec{Namespace: ns.Name}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		eventuallyReady(ctx, project)
	})
})

// expectInProgress asserts that kstatus reads obj, as it is, as InProgress, and returns its result.
func expectInProgress(obj tenancyv1.Object) *kstatus.Result {
	GinkgoHelper()
	result := kstatusResultOf(obj)
	Expect(result.Status).To(Equal(kstatus.InProgressStatus), "%T %s: %s", obj, obj.GetName(), result.Message)
	return result
}

func kstatusResultOf(obj client.Object) *kstatus.Result {
	GinkgoHelper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	result, err := kstatus.Compute(&unstructured.Unstructured{Object: u})
	Expect(err).NotTo(HaveOccurred())
	return result
}
