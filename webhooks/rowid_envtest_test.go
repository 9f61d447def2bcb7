package webhooks_test

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// organizationEditor is a person whom Kubernetes RBAC lets create and change Organizations, and
// no platform admin.
const organizationEditor = "rowan@example.com"

var _ = Describe("Choosing a row id", func() {
	// rowIDPatch sets tenancy.dev/row-id to value (null removes it) and spec.displayName.
	rowIDPatch := func(value any, displayName string) client.Patch {
		return client.RawPatch("application/merge-patch+json", fmt.Appendf(nil,
			`{"metadata":{"annotations":{%q:%s}},"spec":{"displayName":%q}}`, tenancyv1.RowIDAnnotation, value, displayName))
	}
	quoted := func(s string) string { return fmt.Sprintf("%q", s) }
	withRowID := func(obj client.Object, id string) client.Object {
		obj.SetAnnotations(map[string]string{tenancyv1.RowIDAnnotation: id})
		return obj
	}
	refusedWith := func(err error, message string) {
		GinkgoHelper()
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(message)))
	}

	It("is a platform admin's to do on a Project, whatever the Owner may do, and fixed once the row exists", func(ctx SpecContext) {
		org := newOrganization(ctx, "rowid", tenancyv1.TierPro)
		ns := org.Name
		Expect(admin.Create(ctx, membership(ns, "owner", owner, tenancyv1.RoleOwner, ""))).To(Succeed())
		Eventually(func() error { // the Owner's RoleBinding follows the membership
			return as(owner).Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}, client.DryRunAll)
		}).WithContext(ctx).Should(Succeed())
		id := uuid.NewString()
		project := func() *tenancyv1.Project {
			return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
		}

		By("an Owner may not choose it")
		refusedWith(as(owner).Create(ctx, withRowID(project(), id)),
			"metadata.annotations[tenancy.dev/row-id]: Forbidden: alice@example.com is not a platform admin: only a platform admin may choose the row id")

		By("nobody chooses what is not a UUID")
		refusedWith(admin.Create(ctx, withRowID(project(), "web-1")),
			`metadata.annotations[tenancy.dev/row-id]: Invalid value: "web-1": must be a UUID`)

		By("a platform admin may, and the row has the id")
		web := withRowID(project(), id).(*tenancyv1.Project)
		Expect(admin.Create(ctx, web)).To(Succeed())
		eventuallyReady(ctx, web)
		Expect(web.Status.ID).To(Equal(id))

		By("the Owner applies the same value again with a change of their own")
		Expect(as(owner).Patch(ctx, web, rowIDPatch(quoted(id), "Web shop"))).To(Succeed())
		Expect(web.Spec.DisplayName).To(Equal("Web shop"))

		By("nobody changes it once the row exists, platform admins included")
		newID := uuid.NewString()
		refusedWith(admin.Patch(ctx, web, rowIDPatch(quoted(newID), "Web shop")), fmt.Sprintf(
			"metadata.annotations[tenancy.dev/row-id]: Invalid value: %q: is immutable once the project has its row: the row's id is %s", newID, id))

		By("the Owner may remove it; the row keeps its id")
		Expect(as(owner).Patch(ctx, web, rowIDPatch("null", "Web shop"))).To(Succeed())
		Expect(web.Annotations).NotTo(HaveKey(tenancyv1.RowIDAnnotation))
		eventuallyReady(ctx, web)
		Expect(web.Status.ID).To(Equal(id))
	})

	It("is a platform admin's to do on an Organization, whatever RBAC lets others do", func(ctx SpecContext) {
		editor := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-organization-editor"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: []string{"organizations"},
				Verbs: []string{"get", "create", "update", "patch"}}}}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: editor.Name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: editor.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: organizationEditor}}}
		Expect(admin.Create(ctx, editor)).To(Succeed())
		Expect(admin.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(admin.Delete(ctx, binding)).To(Succeed())
			Expect(admin.Delete(ctx, editor)).To(Succeed())
		})
		id := uuid.NewString()
		organization := func() *tenancyv1.Organization {
			return &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("imported")}}
		}

		By("one whom RBAC lets create Organizations may not choose it, not even in a dry run")
		refused := "metadata.annotations[tenancy.dev/row-id]: Forbidden: rowan@example.com is not a platform admin"
		refusedWith(as(organizationEditor).Create(ctx, withRowID(organization(), id)), refused)
		refusedWith(as(organizationEditor).Create(ctx, withRowID(organization(), id), client.DryRunAll), refused)

		By("nor add it later, not even with the id the row has")
		plain := organization()
		Expect(as(organizationEditor).Create(ctx, plain)).To(Succeed())
		eventuallyReady(ctx, plain)
		refusedWith(as(organizationEditor).Patch(ctx, plain, rowIDPatch(quoted(plain.Status.ID), "")), refused)

		By("a platform admin may")
		org := withRowID(organization(), id).(*tenancyv1.Organization)
		Expect(admin.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		Expect(org.Status.ID).To(Equal(id))

		By("the editor re-applies the same value; nobody changes it")
		Expect(as(organizationEditor).Patch(ctx, org, rowIDPatch(quoted(id), "Imported"))).To(Succeed())
		Expect(org.Spec.DisplayName).To(Equal("Imported"))
		refusedWith(admin.Patch(ctx, org, rowIDPatch(quoted(uuid.NewString()), "Imported")),
			"is immutable once the organization has its row: the row's id is "+id)
	})
})
