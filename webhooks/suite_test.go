package webhooks_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// The suite runs the whole manager — controllers and webhooks — against an envtest control plane
// that calls the webhooks over TLS, and a database of its own reached through a proxy that specs
// can cut. Requests come from people through impersonation.
var (
	admin      client.Client // a cluster admin (system:masters): a platform admin
	adminCfg   *rest.Config
	testScheme *runtime.Scheme
	sqlPool    *pgxpool.Pool
	dbProxy    *testenv.Proxy
)

// tenancyUsers is the group every impersonated person is in. The suite lets it edit tenancy
// objects and namespaces cluster-wide, so that the webhooks and admission policies, not RBAC,
// decide what the specs ask.
const tenancyUsers = "tenancy:users"

func TestWebhooks(t *testing.T) {
	testenv.SkipIfShort(t, "envtest and PostgreSQL")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	// A spec's context has no deadline: without this a failing Eventually would wait forever.
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Webhooks")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name:        "webhooks",
		Proxy:       true,
		Webhooks:    true,
		Policies:    true,
		ManagerRBAC: true,
		Log:         GinkgoLogr,
		BeforeManager: func(ctx context.Context, suite *testenv.Suite) error {
			admin, adminCfg, testScheme = suite.Client, suite.Config, suite.Scheme
			return letTenancyUsersEdit(ctx)
		},
		// StartSuite returns once the webhooks answer: the manager's server is up and its cache synced.
		Manager: &testenv.SuiteManager{
			ThroughProxy: true,
			Controllers: &controllers.Settings{
				ResyncPeriod:        time.Minute,
				PublicURL:           "https://auth.tenancy.test",
				InvitationTTL:       time.Hour,
				APIKeyRotationGrace: time.Hour,
				OperatorNamespace:   "tenancy-system",
				Options:             controller.Options{MaxConcurrentReconciles: 4},
			},
			Webhooks: &webhooks.Settings{
				PlatformAdminGroups: []string{"system:masters"},
				OperatorNamespace:   "tenancy-system",
			},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	sqlPool, dbProxy = suite.Pool, suite.Proxy
}, NodeTimeout(5*time.Minute))

func letTenancyUsersEdit(ctx context.Context) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-tenancy-editor"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: []string{"projects", "memberships", "apikeys", "oauthclients"}, Verbs: []string{"*"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "create", "update", "patch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-tenancy-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: tenancyUsers}},
	}
	if err := admin.Create(ctx, role); err != nil {
		return err
	}
	return admin.Create(ctx, binding)
}

// as is a client that acts as the tenancy user email.
func as(email string) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: email, Groups: []string{tenancyUsers, "system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

var nameCounter atomic.Int64

// uniqueName keeps specs from seeing each other's objects.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nameCounter.Add(1))
}

// newOrganization creates an Organization of tier and waits for it to be Ready.
func newOrganization(ctx context.Context, prefix string, tier tenancyv1.Tier) *tenancyv1.Organization {
	GinkgoHelper()
	org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName(prefix)}, Spec: tenancyv1.OrganizationSpec{Tier: tier}}
	Expect(admin.Create(ctx, org)).To(Succeed())
	eventuallyReady(ctx, org)
	return org
}

func membership(ns, name, user string, role tenancyv1.Role, project string) *tenancyv1.Membership {
	return &tenancyv1.Membership{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       tenancyv1.MembershipSpec{User: user, Role: role, Project: project},
	}
}

func apiKey(ns, name string, role tenancyv1.Role, project string) *tenancyv1.APIKey {
	return &tenancyv1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       tenancyv1.APIKeySpec{Role: role, Project: project},
	}
}

// eventuallyReady waits for obj to be Ready at its current generation: its controller, and so
// the webhooks' cache, has seen it.
func eventuallyReady(ctx context.Context, obj tenancyv1.Object) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		ready := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", ready.Reason, ready.Message)
		g.Expect(obj.CommonStatusRef().ObservedGeneration).To(Equal(obj.GetGeneration()))
	}).WithContext(ctx).Should(Succeed())
}
