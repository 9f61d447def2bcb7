package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
)

var _ = Describe("Self-service RBAC", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("rbacorg")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
	})

	// can asks the API server's authorizer, as SubjectAccessReview, whether user may do verb.
	can := func(ctx SpecContext, user, verb, group, resource, name string) bool {
		GinkgoHelper()
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: org.Name, Verb: verb, Group: group, Resource: resource, Name: name,
			},
		}}
		Expect(k8sClient.Create(ctx, review)).To(Succeed())
		return review.Status.Allowed
	}
	member := func(ctx SpecContext, name, email string, role tenancyv1.Role, project string) *tenancyv1.Membership {
		GinkgoHelper()
		m := &tenancyv1.Membership{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: org.Name},
			Spec:       tenancyv1.MembershipSpec{User: email, Role: role, Project: project},
		}
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		return m
	}

	It("lets each role do what it should with kubectl, and follows membership changes", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: org.Name}})).To(Succeed())
		member(ctx, "olga", "Olga@Example.com", tenancyv1.RoleOwner, "")
		member(ctx, "adam", "adam@example.com", tenancyv1.RoleAdmin, "")
		viewer := member(ctx, "vera", "vera@example.com", tenancyv1.RoleViewer, "")
		member(ctx, "pete", "pete@example.com", tenancyv1.RoleAdmin, "web")
		key := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: org.Name}, Spec: tenancyv1.APIKeySpec{Role: tenancyv1.RoleMember}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		eventuallyReady(ctx, key)
		app := &tenancyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "portal", Namespace: org.Name},
			Spec: tenancyv1.OAuthClientSpec{DisplayName: "Portal", RedirectURIs: []string{"https://portal.example.com/callback"}}}
		Expect(k8sClient.Create(ctx, app)).To(Succeed())
		eventuallyReady(ctx, app)

		// An APIKey whose spec points at the Owner's invitation must not widen what Admins may read.
		sneaky := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "sneaky", Namespace: org.Name},
			Spec: tenancyv1.APIKeySpec{Role: tenancyv1.RoleMember, SecretName: "olga-invite"}}
		Expect(k8sClient.Create(ctx, sneaky)).To(Succeed())
		eventuallyCondition(ctx, sneaky, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.SecretConflictReason)

		Eventually(func(g Gomega) {
			g.Expect(can(ctx, "olga@example.com", "create", "tenancy.dev", "memberships", "")).To(BeTrue(), "Owner writes")
			g.Expect(can(ctx, "olga@example.com", "get", "", "secrets", "adam-invite")).To(BeTrue(), "Owner reads every Secret")
			g.Expect(can(ctx, "adam@example.com", "delete", "tenancy.dev", "apikeys", "ci")).To(BeTrue(), "Admin writes")
			g.Expect(can(ctx, "adam@example.com", "get", "", "secrets", "ci-apikey")).To(BeTrue(), "Admin reads API key Secrets")
			g.Expect(can(ctx, "adam@example.com", "create", "tenancy.dev", "oauthclients", "")).To(BeTrue(), "Admin writes OAuth clients")
			g.Expect(can(ctx, "adam@example.com", "get", "", "secrets", "portal-oauth-client")).To(BeTrue(), "Admin reads OAuth client Secrets")
			g.Expect(can(ctx, "adam@example.com", "get", "", "secrets", "vera-invite")).To(BeTrue(), "Admin reads invitations below Owner")
			g.Expect(can(ctx, "adam@example.com", "get", "", "secrets", "olga-invite")).To(BeFalse(), "but not an Owner's invitation")
			g.Expect(can(ctx, "adam@example.com", "list", "", "secrets", "")).To(BeFalse(), "nor list Secrets")
			g.Expect(can(ctx, "vera@example.com", "list", "tenancy.dev", "projects", "")).To(BeTrue(), "Viewer lists")
			g.Expect(can(ctx, "vera@example.com", "create", "tenancy.dev", "memberships", "")).To(BeFalse(), "Viewer does not write")
			g.Expect(can(ctx, "vera@example.com", "watch", "tenancy.dev", "oauthclients", "")).To(BeTrue(), "Viewer watches OAuth clients")
			g.Expect(can(ctx, "vera@example.com", "update", "tenancy.dev", "oauthclients", "portal")).To(BeFalse(), "but does not change them")
			g.Expect(can(ctx, "vera@example.com", "get", "", "secrets", "portal-oauth-client")).To(BeFalse(), "nor reads their Secrets")
			g.Expect(can(ctx, "vera@example.com", "get", "", "secrets", "ci-apikey")).To(BeFalse(), "Viewer reads no Secret")
			g.Expect(can(ctx, "pete@example.com", "create", "tenancy.dev", "apikeys", "")).To(BeFalse(),
				"a project Admin cannot write namespace-wide")
			g.Expect(can(ctx, "pete@example.com", "get", "tenancy.dev", "projects", "web")).To(BeTrue())
			g.Expect(can(ctx, "stranger@example.com", "list", "tenancy.dev", "projects", "")).To(BeFalse())
		}).WithContext(ctx).Should(Succeed())

		Expect(patchSpec(ctx, viewer, func(m *tenancyv1.Membership) { m.Spec.Role = tenancyv1.RoleAdmin })).To(Succeed())
		Eventually(func() bool {
			return can(ctx, "vera@example.com", "create", "tenancy.dev", "memberships", "")
		}).WithContext(ctx).Should(BeTrue(), "a promotion reaches RBAC")

		Expect(k8sClient.Delete(ctx, viewer)).To(Succeed())
		Eventually(func() bool {
			return can(ctx, "vera@example.com", "list", "tenancy.dev", "projects", "")
		}).WithContext(ctx).Should(BeFalse(), "a removed member loses access")
	})

	It("replaces a binding of its name that someone pointed at another role", func(ctx SpecContext) {
		nsName := uniqueName("prebound")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}})).To(Succeed())
		trap := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: controllers.ViewerRoleName + "s", Namespace: nsName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		}
		Expect(k8sClient.Create(ctx, trap)).To(Succeed())
		adopter := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("adopter")},
			Spec: tenancyv1.OrganizationSpec{Namespace: nsName}}
		Expect(k8sClient.Create(ctx, adopter)).To(Succeed())
		eventuallyReady(ctx, adopter)
		binding := &rbacv1.RoleBinding{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(trap), binding)).To(Succeed())
		Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllers.ViewerRoleName}))
		Expect(binding.Labels).To(HaveKeyWithValue(tenancyv1.ManagedByLabel, tenancyv1.ManagedByValue))
	})

	It("binds Owners and Viewers to two ClusterRoles, and restores them when changed by hand", func(ctx SpecContext) {
		for _, name := range []string{controllers.OwnerRoleName, controllers.ViewerRoleName} {
			Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name + "s", Namespace: org.Name}, &rbacv1.RoleBinding{})).To(Succeed())
			Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name, Namespace: org.Name}, &rbacv1.Role{})).
				To(Satisfy(apierrors.IsNotFound), "no namespace Role of the ClusterRole's name")
		}
		viewer := &rbacv1.ClusterRole{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: controllers.ViewerRoleName}, viewer)).To(Succeed())
		Expect(viewer.Labels).To(HaveKeyWithValue(tenancyv1.ManagedByLabel, tenancyv1.ManagedByValue))
		Expect(viewer.OwnerReferences).To(BeEmpty(), "the ClusterRoles belong to no organization")
		wantRules := viewer.Rules
		viewer.Rules = append(viewer.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}})
		Expect(k8sClient.Update(ctx, viewer)).To(Succeed())
		Expect(k8sClient.Delete(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: controllers.OwnerRoleName}})).To(Succeed())

		// The next reconcile of any organization puts both back.
		member(ctx, "tess", "tess@example.com", tenancyv1.RoleOwner, "")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(viewer), viewer)).To(Succeed())
			g.Expect(viewer.Rules).To(Equal(wantRules))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: controllers.OwnerRoleName}, &rbacv1.ClusterRole{})).To(Succeed())
		}).WithContext(ctx).Should(Succeed())
		Eventually(func() bool {
			return can(ctx, "tess@example.com", "list", "", "secrets", "")
		}).WithContext(ctx).Should(BeTrue(), "the Owner reads Secrets through the restored ClusterRole")
	})

	It("moves a namespace from an earlier version's Owner and Viewer Roles to the ClusterRoles", func(ctx SpecContext) {
		nsName := uniqueName("upgraded")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}})).To(Succeed())
		// What an earlier version left: a Role and a binding to it, labelled for the organization.
		earlier := map[string]string{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue, tenancyv1.OrganizationLabel: nsName}
		oldRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: controllers.OwnerRoleName, Namespace: nsName, Labels: earlier},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"tenancy.dev"}, Resources: []string{"projects"}, Verbs: []string{"get"}}}}
		Expect(k8sClient.Create(ctx, oldRole)).To(Succeed())
		oldBinding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: controllers.OwnerRoleName + "s", Namespace: nsName, Labels: earlier},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controllers.OwnerRoleName}}
		Expect(k8sClient.Create(ctx, oldBinding)).To(Succeed())

		upgraded := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: nsName}}
		Expect(k8sClient.Create(ctx, upgraded)).To(Succeed())
		eventuallyReady(ctx, upgraded)
		Eventually(func(g Gomega) {
			binding := &rbacv1.RoleBinding{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(oldBinding), binding)).To(Succeed())
			g.Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllers.OwnerRoleName}))
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(oldRole), &rbacv1.Role{})).To(Satisfy(apierrors.IsNotFound))
		}).WithContext(ctx).Should(Succeed())
	})

	It("restores a binding changed by hand", func(ctx SpecContext) {
		member(ctx, "rita", "rita@example.com", tenancyv1.RoleOwner, "")
		binding := &rbacv1.RoleBinding{}
		key := client.ObjectKey{Namespace: org.Name, Name: controllers.OwnerRoleName + "s"}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, binding)).To(Succeed())
			g.Expect(binding.Subjects).To(ContainElement(HaveField("Name", "rita@example.com")))
		}).WithContext(ctx).Should(Succeed())
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "intruder@example.com"})
		Expect(k8sClient.Update(ctx, binding)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, binding)).To(Succeed())
			g.Expect(binding.Subjects).NotTo(ContainElement(HaveField("Name", "intruder@example.com")))
		}).WithContext(ctx).Should(Succeed())
	})
})
