package controllers_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// The suite runs the real controllers against an envtest control plane and a database of its
// own. The manager reaches PostgreSQL through a proxy that specs can cut, and mails invitations
// to a Mailpit.
var (
	mailpit   *testenv.Mailpit
	k8sClient client.Client // a cluster admin (system:masters), as a person would be
	// managerClient acts with the manager's identity, for what only the operator may do.
	managerClient client.Client
	sqlPool       *pgxpool.Pool // direct, never cut
	dbProxy       *testenv.Proxy
)

// resyncPeriod is short so that specs see drift restored.
const resyncPeriod = 2 * time.Second

// rotationGrace is how long a rotated-out key keeps working in the suite.
const rotationGrace = time.Hour

// publicURL is where invitation links point in the suite.
const publicURL = "https://auth.tenancy.test"

func TestControllers(t *testing.T) {
	testenv.SkipIfShort(t, "envtest and PostgreSQL")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	// A spec's context has no deadline: without this a failing Eventually would wait forever.
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Controllers")
}

// The manager runs its real wiring, as cmd/manager does, as its service account with only
// config/rbac's role. The webhooks stay off (--enable-webhooks=false): these specs reach states,
// such as objects in a namespace no organization owns, that the controllers must handle and the
// webhooks refuse; webhooks/ tests the two together.
var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	mailpit = testenv.StartMailpit(GinkgoT())
	smtp := mailpit.SMTPConfig()
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name:        "controllers",
		Proxy:       true,
		Policies:    true,
		ManagerRBAC: true,
		Log:         GinkgoLogr,
		Manager: &testenv.SuiteManager{
			ThroughProxy: true,
			SMTP:         &smtp,
			Controllers: &controllers.Settings{
				ResyncPeriod:        resyncPeriod,
				PublicURL:           publicURL,
				InvitationTTL:       7 * 24 * time.Hour,
				APIKeyRotationGrace: rotationGrace,
				OperatorNamespace:   "tenancy-system",
				Options:             controller.Options{MaxConcurrentReconciles: 4},
			},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	k8sClient, managerClient, sqlPool, dbProxy = suite.Client, suite.ManagerClient, suite.Pool, suite.Proxy
}, NodeTimeout(5*time.Minute))

// eventuallyReady waits for obj to be Ready at its current generation.
func eventuallyReady(ctx context.Context, obj tenancyv1.Object) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		status := obj.CommonStatusRef()
		ready := meta.FindStatusCondition(status.Conditions, tenancyv1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", ready.Reason, ready.Message)
		g.Expect(status.ObservedGeneration).To(Equal(obj.GetGeneration()))
		g.Expect(meta.FindStatusCondition(status.Conditions, tenancyv1.ReconcilingCondition)).To(BeNil())
		g.Expect(meta.FindStatusCondition(status.Conditions, tenancyv1.StalledCondition)).To(BeNil())
		g.Expect(kstatusOf(obj)).To(Equal(kstatus.CurrentStatus), "kstatus must agree")
	}).WithContext(ctx).Should(Succeed())
}

// kstatusOf computes what kstatus (kubectl wait, Argo CD, Flux, cli-utils) reports for obj.
func kstatusOf(obj client.Object) kstatus.Status {
	GinkgoHelper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	result, err := kstatus.Compute(&unstructured.Unstructured{Object: u})
	Expect(err).NotTo(HaveOccurred())
	return result.Status
}

// sha256Of is how tokens and keys are stored: SHA-256 of their bytes.
func sha256Of(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// eventuallyGone waits until obj no longer exists.
func eventuallyGone(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	Eventually(func() error {
		return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	}).WithContext(ctx).Should(MatchError(apierrors.IsNotFound, "IsNotFound"))
}

// eventuallyCondition waits for obj's condition to have status and reason, and returns it.
func eventuallyCondition(ctx context.Context, obj tenancyv1.Object, condType string, status metav1.ConditionStatus, reason string) metav1.Condition {
	GinkgoHelper()
	var found metav1.Condition
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		c := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, condType)
		g.Expect(c).NotTo(BeNil(), "no %s condition yet", condType)
		g.Expect(c.Status).To(Equal(status), "%s: %s %s", condType, c.Reason, c.Message)
		g.Expect(c.Reason).To(Equal(reason), "%s: %s", condType, c.Message)
		found = *c
	}).WithContext(ctx).Should(Succeed())
	return found
}

// patchSpec changes obj as mutate says with a merge patch: no resourceVersion, so the
// controller's own writes in between cannot make it conflict.
func patchSpec[T client.Object](ctx context.Context, obj T, mutate func(T)) error {
	before := obj.DeepCopyObject().(T)
	mutate(obj)
	return k8sClient.Patch(ctx, obj, client.MergeFrom(before))
}

var nameCounter atomic.Int64

// uniqueName keeps specs from seeing each other's objects.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nameCounter.Add(1))
}

func countRows(ctx context.Context, sql string, args ...any) int {
	GinkgoHelper()
	var n int
	Expect(sqlPool.QueryRow(ctx, sql, args...).Scan(&n)).To(Succeed())
	return n
}

// The operator's rows, read whole through the direct pool (internal/testenv/rows.go), so that a
// spec compares their fields and a failure names the one that differs. where is a WHERE clause
// over the table's alias: o, p, m (with u and p), k, i (with m).

func organizationRow(ctx context.Context, where string, args ...any) (testenv.OrganizationRow, error) {
	return testenv.ReadOrganization(ctx, sqlPool, where, args...)
}

// projectRow reads the project whose row id is id.
func projectRow(ctx context.Context, id string) (testenv.ProjectRow, error) {
	return testenv.ReadProject(ctx, sqlPool, "p.id = $1", id)
}

func membershipRow(ctx context.Context, where string, args ...any) (testenv.MembershipRow, error) {
	return testenv.ReadMembership(ctx, sqlPool, where, args...)
}

func apiKeyRow(ctx context.Context, where string, args ...any) (testenv.APIKeyRow, error) {
	return testenv.ReadAPIKey(ctx, sqlPool, where, args...)
}

func apiKeyRows(ctx context.Context, where string, args ...any) ([]testenv.APIKeyRow, error) {
	return testenv.ReadAPIKeys(ctx, sqlPool, where, args...)
}

func invitationRow(ctx context.Context, where string, args ...any) (testenv.InvitationRow, error) {
	return testenv.ReadInvitation(ctx, sqlPool, where, args...)
}
