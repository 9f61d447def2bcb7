package controllers_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Adopting a namespace", func() {
	It("reports the RoleBindings already there that let others read its Secrets, and only those", func(ctx SpecContext) {
		nsName := uniqueName("monitoring")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}})).To(Succeed())
		secretReader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("secret-reader")},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "list"}}}}
		configReader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("config-reader")},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "delete"}},
			}}
		everything := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "everything", Namespace: nsName},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}
		for _, obj := range []client.Object{secretReader, configReader, everything} {
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		}
		DeferCleanup(func(ctx SpecContext) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, secretReader))).To(Succeed())
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, configReader))).To(Succeed())
		})
		binding := func(name, kind, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
			return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsName},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role}, Subjects: subjects}
		}
		user := func(name string) rbacv1.Subject {
			return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}
		}
		foreign := []*rbacv1.RoleBinding{
			binding("ops-secrets", "ClusterRole", secretReader.Name,
				user("mallory@example.com"), rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "ops"}),
			binding("ops-config", "ClusterRole", configReader.Name, user("carl@example.com")),
			binding("deployer", "Role", everything.Name, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: nsName, Name: "ci"}),
		}
		for _, b := range foreign {
			Expect(k8sClient.Create(ctx, b)).To(Succeed())
		}

		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("adopter")},
			Spec: tenancyv1.OrganizationSpec{Namespace: nsName}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		cond := eventuallyCondition(ctx, org, tenancyv1.ForeignSecretAccessCondition, metav1.ConditionTrue, tenancyv1.ForeignRoleBindingsReason)
		Expect(cond.Message).To(Equal(fmt.Sprintf(
			"RoleBindings that the operator did not make let others read the Secrets of namespace %s: "+
				"deployer (Role everything, for ServiceAccount %s/ci); "+
				"ops-secrets (ClusterRole %s, for User mallory@example.com, Group ops); delete those that are not meant to stay",
			nsName, nsName, secretReader.Name)))
		eventuallyReady(ctx, org)
		Expect(meta.IsStatusConditionTrue(org.Status.Conditions, tenancyv1.ForeignSecretAccessCondition)).To(BeTrue(),
			"the report does not make the organization not Ready")

		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace("default"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(
				HaveField("InvolvedObject.UID", org.UID),
				HaveField("Type", corev1.EventTypeWarning),
				HaveField("Reason", "ForeignSecretAccess"),
				HaveField("Message", fmt.Sprintf("RoleBindings that the operator did not make let others read the Secrets of namespace %s: "+
					"deployer, ops-secrets; see the condition ForeignSecretAccess", nsName)),
			)))
		}).WithContext(ctx).Should(Succeed())

		By("the condition goes at the next check once they are gone")
		for _, b := range foreign {
			Expect(k8sClient.Delete(ctx, b)).To(Succeed())
		}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(meta.FindStatusCondition(org.Status.Conditions, tenancyv1.ForeignSecretAccessCondition)).To(BeNil())
		}).WithContext(ctx).Should(Succeed(), "checked again within the resync period")
	})

	It("refuses a namespace that someone else created after the Organization", func(ctx SpecContext) {
		name := uniqueName("late")
		// Keeps the operator from creating the namespace, as if someone else got there first.
		policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "test-" + name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"}},
					},
				}}},
				Validations: []admissionregistrationv1.Validation{{Expression: fmt.Sprintf(
					"object.metadata.name != '%s' || request.userInfo.username != '%s'", name, testenv.ManagerUsername)}},
			},
		}
		policyBinding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: policy.Name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		}
		Expect(k8sClient.Create(ctx, policy)).To(Succeed())
		Expect(k8sClient.Create(ctx, policyBinding)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(k8sClient.Delete(ctx, policyBinding)).To(Succeed())
			Expect(k8sClient.Delete(ctx, policy)).To(Succeed())
		})
		Eventually(func() error {
			return managerClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.DryRunAll)
		}).WithContext(ctx).Should(HaveOccurred(), "the policy is not enforced yet")

		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		failed := eventuallyCondition(ctx, org, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, tenancyv1.ProgressingReason)
		Expect(failed.Message).To(ContainSubstring("creating namespace %s", name))
		// creationTimestamp counts whole seconds, and a namespace of the Organization's second
		// counts as older (a tenant's Namespace and Organization applied together): start the next.
		Eventually(time.Now).WithContext(ctx).Should(BeTemporally(">=", org.CreationTimestamp.Add(time.Second)))
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		Expect(ns.CreationTimestamp.After(org.CreationTimestamp.Time)).To(BeTrue())

		stalled := eventuallyCondition(ctx, org, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceAdoptionRefusedReason)
		Expect(stalled.Message).To(Equal(fmt.Sprintf("Namespace %s was created after this Organization, not by the operator, "+
			"and only a platform admin may adopt an existing namespace: have one delete this Organization and create it again, or delete the namespace", name)))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		Expect(ns.Labels).NotTo(HaveKey(tenancyv1.OrganizationLabel))

		By("deleting the Organization leaves the namespace as it was")
		Expect(k8sClient.Delete(ctx, org)).To(Succeed())
		eventuallyGone(ctx, org)
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ns), ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
		Expect(ns.Labels).NotTo(HaveKey(tenancyv1.OrganizationLabel))
	})
})
