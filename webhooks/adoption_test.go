package webhooks_test

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// organizationCreator is a person whom Kubernetes RBAC lets create Organizations, and no platform
// admin.
const organizationCreator = "olivia@example.com"

var _ = Describe("Adopting an existing namespace", Ordered, ContinueOnFailure, func() {
	var authd client.Client

	BeforeAll(func(ctx SpecContext) {
		// authd's own ClusterRole, which lets it create Organizations for signup.
		operatorNamespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenancy-system"}}
		Expect(client.IgnoreAlreadyExists(admin.Create(ctx, operatorNamespace))).To(Succeed())
		Expect(testenv.InstallAuthdRBAC(ctx, admin, operatorNamespace.Name)).To(Succeed())
		cfg := rest.CopyConfig(adminCfg)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: testenv.AuthdUsername,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:tenancy-system", "system:authenticated"}}
		var err error
		authd, err = client.New(cfg, client.Options{Scheme: testScheme})
		Expect(err).NotTo(HaveOccurred())

		creator := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-organization-creator"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: []string{"organizations"}, Verbs: []string{"get", "create"}}}}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: creator.Name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: creator.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: organizationCreator}}}
		Expect(admin.Create(ctx, creator)).To(Succeed())
		Expect(admin.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(admin.Delete(ctx, binding)).To(Succeed())
			Expect(admin.Delete(ctx, creator)).To(Succeed())
		})
	})

	// existingNamespace creates a namespace that holds a Secret, as a platform's own would.
	existingNamespace := func(ctx context.Context) string {
		GinkgoHelper()
		name := uniqueName("monitoring")
		Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		Expect(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "grafana-admin"},
			StringData: map[string]string{"password": "s3cret"}})).To(Succeed())
		return name
	}
	refusal := func(ns string) string {
		return fmt.Sprintf("spec.namespace: Forbidden: namespace %s already exists; only a platform admin may adopt an existing namespace into an organization", ns)
	}

	It("is refused to authd's service account, as a signup would ask", func(ctx SpecContext) {
		ns := existingNamespace(ctx)
		err := authd.Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(refusal(ns))))
	})

	It("is refused to a user whom RBAC lets create Organizations, whatever the Organization's name", func(ctx SpecContext) {
		ns := existingNamespace(ctx)
		err := as(organizationCreator).Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("team")},
			Spec: tenancyv1.OrganizationSpec{Namespace: ns}})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(refusal(ns))))
		Expect(as(organizationCreator).Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: ns}}, client.DryRunAll)).
			To(MatchError(ContainSubstring(refusal(ns))), "a dry run gets the same answer")
	})

	It("is a platform admin's to do", func(ctx SpecContext) {
		ns := existingNamespace(ctx)
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		Expect(admin.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		namespace := &corev1.Namespace{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: ns}, namespace)).To(Succeed())
		Expect(namespace.Labels).To(HaveKeyWithValue(tenancyv1.OrganizationLabel, org.Name))
		Expect(namespace.Annotations).NotTo(HaveKey(tenancyv1.CreatedNamespaceAnnotation), "adopted, not created")
	})

	It("is not what a signup of a new name does: authd's Organization gets a new namespace", func(ctx SpecContext) {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("signup")}}
		Expect(authd.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		namespace := &corev1.Namespace{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: org.Name}, namespace)).To(Succeed())
		Expect(namespace.Annotations).To(HaveKeyWithValue(tenancyv1.CreatedNamespaceAnnotation, "true"))
	})
})
