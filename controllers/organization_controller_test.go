package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Organization controller", func() {
	newOrganization := func(name string) *tenancyv1.Organization {
		return &tenancyv1.Organization{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       tenancyv1.OrganizationSpec{DisplayName: "Org " + name},
		}
	}

	It("creates and labels its namespace, writes its row and reports Ready", func(ctx SpecContext) {
		org := newOrganization(uniqueName("acme"))
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)

		Expect(org.Finalizers).To(ContainElement(tenancyv1.Finalizer))
		Expect(org.Spec.Tier).To(Equal(tenancyv1.TierFree), "CRD default")
		Expect(org.Spec.DeletionPolicy).To(Equal(tenancyv1.DeletionPolicyRetain), "CRD default")
		Expect(org.Status.Namespace).To(Equal(org.Name))
		Expect(org.Status.ID).NotTo(BeEmpty())

		ns := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: org.Name}, ns)).To(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue(tenancyv1.OrganizationLabel, org.Name))
		Expect(ns.Annotations).To(HaveKeyWithValue(tenancyv1.CreatedNamespaceAnnotation, "true"))
		Expect(ns.OwnerReferences).To(ContainElement(HaveField("UID", org.UID)))

		Expect(organizationRow(ctx, "o.id = $1", org.Status.ID)).To(MatchAllFields(Fields{
			"ID":          Equal(org.Status.ID),
			"UID":         Equal(string(org.UID)),
			"Name":        Equal(org.Name),
			"DisplayName": Equal("Org " + org.Name),
			"Tier":        Equal("Free"),
			"Namespace":   Equal(org.Name),
		}))
	})

	It("updates its row when the spec changes", func(ctx SpecContext) {
		org := newOrganization(uniqueName("tiered"))
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)

		Expect(patchSpec(ctx, org, func(o *tenancyv1.Organization) {
			o.Spec.Tier = tenancyv1.TierEnterprise
			o.Spec.DisplayName = "Renamed"
		})).To(Succeed())
		eventuallyReady(ctx, org)
		Expect(organizationRow(ctx, "o.id = $1", org.Status.ID)).To(MatchFields(IgnoreExtras, Fields{
			"Tier":        Equal("Enterprise"),
			"DisplayName": Equal("Renamed"),
		}))
	})

	It("refuses to change spec.namespace", func(ctx SpecContext) {
		org := newOrganization(uniqueName("pinned"))
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		err := patchSpec(ctx, org, func(o *tenancyv1.Organization) { o.Spec.Namespace = o.Name + "-moved" })
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.namespace is immutable"))
	})

	It("adopts an existing namespace and only unlabels it when deleted", func(ctx SpecContext) {
		nsName := uniqueName("existing")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}})).To(Succeed())
		org := newOrganization(uniqueName("adopter"))
		org.Spec.Namespace = nsName
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		var ownRoles rbacv1.RoleList
		Expect(k8sClient.List(ctx, &ownRoles, client.InNamespace(nsName))).To(Succeed())
		Expect(ownRoles.Items).To(HaveLen(1), "the Admin Role; Owners and Viewers are bound to ClusterRoles")
		var ownBindings rbacv1.RoleBindingList
		Expect(k8sClient.List(ctx, &ownBindings, client.InNamespace(nsName))).To(Succeed())
		Expect(ownBindings.Items).To(HaveLen(3))

		ns := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: nsName}, ns)).To(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue(tenancyv1.OrganizationLabel, org.Name))
		Expect(ns.Annotations).NotTo(HaveKey(tenancyv1.CreatedNamespaceAnnotation))

		Expect(k8sClient.Delete(ctx, org)).To(Succeed())
		eventuallyGone(ctx, org)
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: nsName}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil(), "an adopted namespace is not ours to delete")
		Expect(ns.Labels).NotTo(HaveKey(tenancyv1.OrganizationLabel))
		var roles rbacv1.RoleList
		Expect(k8sClient.List(ctx, &roles, client.InNamespace(nsName))).To(Succeed())
		Expect(roles.Items).To(BeEmpty(), "the operator's Roles leave with the organization")
		var bindings rbacv1.RoleBindingList
		Expect(k8sClient.List(ctx, &bindings, client.InNamespace(nsName))).To(Succeed())
		Expect(bindings.Items).To(BeEmpty())
	})

	It("stalls, naming the owner, when its namespace belongs to another organization", func(ctx SpecContext) {
		first := newOrganization(uniqueName("first"))
		Expect(k8sClient.Create(ctx, first)).To(Succeed())
		eventuallyReady(ctx, first)

		second := newOrganization(uniqueName("second"))
		second.Spec.Namespace = first.Name
		Expect(k8sClient.Create(ctx, second)).To(Succeed())
		stalledCond := eventuallyCondition(ctx, second, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceConflictReason)
		Expect(stalledCond.Message).To(ContainSubstring("already bound to organization " + first.Name))
		ready := eventuallyCondition(ctx, second, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.NamespaceConflictReason)
		Expect(ready.ObservedGeneration).To(Equal(second.Generation))
		Expect(second.Status.ObservedGeneration).To(Equal(second.Generation), "a stalled decision is observed (kstatus Failed)")
		Expect(kstatusOf(second)).To(Equal(kstatus.FailedStatus))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.organizations WHERE name = $1", second.Name)).To(Equal(0))

		// Deleting the loser must leave the winner's namespace alone.
		Expect(k8sClient.Delete(ctx, second)).To(Succeed())
		eventuallyGone(ctx, second)
		ns := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: first.Name}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
		Expect(ns.Labels).To(HaveKeyWithValue(tenancyv1.OrganizationLabel, first.Name))
	})

	It("refuses the cluster's and the operator's namespaces", func(ctx SpecContext) {
		for _, ns := range []string{"default", "kube-system", "tenancy-system"} {
			org := newOrganization(uniqueName("greedy"))
			org.Spec.Namespace = ns
			Expect(k8sClient.Create(ctx, org)).To(Succeed())
			cond := eventuallyCondition(ctx, org, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceReservedReason)
			Expect(cond.Message).To(ContainSubstring("Namespace " + ns + " is reserved"))
			namespace := &corev1.Namespace{}
			if err := k8sClient.Get(ctx, client.ObjectKey{Name: ns}, namespace); err == nil {
				Expect(namespace.Labels).NotTo(HaveKey(tenancyv1.OrganizationLabel))
			}
		}
	})

	It("removes its rows and its namespace when deleted, keeping API keys revoked", func(ctx SpecContext) {
		org := newOrganization(uniqueName("doomed"))
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		proj := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: org.Name}}
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyReady(ctx, proj)
		_, err := sqlPool.Exec(ctx, `INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role)
		                             VALUES (gen_random_uuid(), 'ci', $1, $2, 'tnc_', sha256(convert_to($2::text, 'UTF8')), 'Member')`,
			org.Status.ID, "key-"+org.Name)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Status.Projects).To(Equal(int32(1)))
		}).WithContext(ctx).Should(Succeed())

		Expect(k8sClient.Delete(ctx, org)).To(Succeed())
		eventuallyGone(ctx, org)

		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.organizations WHERE uid = $1", string(org.UID))).To(Equal(0))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE uid = $1", string(proj.UID))).To(Equal(0))
		Expect(apiKeyRow(ctx, "k.key_id = $1", "key-"+org.Name)).To(HaveField("RevokedAt", Not(BeNil())), "the key stays, revoked")
		ns := &corev1.Namespace{}
		err = k8sClient.Get(ctx, client.ObjectKey{Name: org.Name}, ns)
		if err == nil {
			Expect(ns.DeletionTimestamp).NotTo(BeNil(), "the namespace the operator created is being deleted")
		} else {
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
		}
	})

	It("restores its row when someone deletes or changes it by hand", func(ctx SpecContext) {
		org := newOrganization(uniqueName("drift"))
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		id := org.Status.ID

		_, err := sqlPool.Exec(ctx, "UPDATE tenancy.organizations SET tier = 'Enterprise', display_name = 'hacked' WHERE id = $1", id)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (testenv.OrganizationRow, error) {
			return organizationRow(ctx, "o.id = $1", id)
		}).WithContext(ctx).Should(MatchFields(IgnoreExtras, Fields{
			"Tier":        Equal("Free"),
			"DisplayName": Equal(org.Spec.DisplayName),
		}))

		_, err = sqlPool.Exec(ctx, "DELETE FROM tenancy.organizations WHERE id = $1", id)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (testenv.OrganizationRow, error) {
			return organizationRow(ctx, "o.id = $1", id)
		}).WithContext(ctx).Should(HaveField("UID", string(org.UID)), "restored with the same id")

		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace("default"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(
				HaveField("InvolvedObject.UID", org.UID),
				HaveField("Reason", "DriftRestored"),
			)))
		}).WithContext(ctx).Should(Succeed())
	})
})
