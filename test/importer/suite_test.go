// Package importer_test imports a hand-built multi-tenant schema with the tenancy command, built
// from the checkout and run as a platform team runs it, into the whole system: envtest's API
// server with the webhooks, the manager, PostgreSQL, and authd over real HTTP, where the imported
// people then sign in with their old passwords.
package importer_test

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/authd/authdtest"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

const operatorNamespace = "tenancy-system"

var (
	admin       client.Client
	adminConfig *rest.Config
	sqlPool     *pgxpool.Pool
	databaseURL string
	authdURL    string
	// tenancyBin is cmd/tenancy built from the checkout; kubeconfig a platform admin's.
	tenancyBin, kubeconfig string
)

func TestImport(t *testing.T) {
	testenv.SkipIfShort(t, "envtest and PostgreSQL")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	RunSpecs(t, "Import")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	dir := GinkgoT().TempDir()
	Expect(testenv.BuildBinaries(ctx, dir, false, "./cmd/tenancy")).To(Succeed())
	tenancyBin = filepath.Join(dir, "tenancy")

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	authdURL = "http://" + listener.Addr().String()
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name:              "import",
		Webhooks:          true,
		OperatorNamespace: operatorNamespace,
		Policies:          true,
		ManagerRBAC:       true,
		AuthdRBAC:         true,
		Log:               GinkgoLogr,
		Manager: &testenv.SuiteManager{
			Controllers: &controllers.Settings{
				ResyncPeriod: time.Minute, PublicURL: authdURL, InvitationTTL: time.Hour,
				APIKeyRotationGrace: time.Hour, OperatorNamespace: operatorNamespace,
				Options: controller.Options{MaxConcurrentReconciles: 4},
			},
			Webhooks: &webhooks.Settings{PlatformAdminGroups: []string{"system:masters"}, OperatorNamespace: operatorNamespace},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	admin, adminConfig, sqlPool, databaseURL = suite.Client, suite.Config, suite.Pool, suite.DatabaseURL

	// The platform admin who runs the import, with a kubeconfig as kubectl would use.
	platformAdmin, err := suite.Env.AddUser(envtest.User{Name: "platform-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	config, err := platformAdmin.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, config, 0o600)).To(Succeed())

	pg, err := db.Connect(ctx, databaseURL, GinkgoLogr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Close)
	Expect(pg.Start(ctx)).To(Succeed())
	rotator := &signing.Rotator{Reader: admin, Client: admin, Namespace: operatorNamespace, ContextKeys: pg,
		Policy: signing.Policy{Algorithm: signing.ES256, RotateEvery: 30 * 24 * time.Hour, PublishAhead: 10 * time.Minute}}
	Expect(rotator.Sync(ctx, time.Now())).To(Succeed())
	startAuthd(listener, suite)
}, NodeTimeout(10*time.Minute))

// startAuthd serves authd on listener with light argon2id parameters: every imported person signs
// in once, and each sign-in rehashes.
func startAuthd(listener net.Listener, suite *testenv.Suite) {
	GinkgoHelper()
	conf := authd.Config{
		Issuer: authdURL, PublicURL: authdURL, Audience: "tenancy", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, SessionLifetime: 24 * time.Hour, RefreshReuseInterval: 10 * time.Second,
		OperatorNamespace: operatorNamespace, SignupTimeout: 30 * time.Second,
		Passwords: authd.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1},
		Throttle: authd.ThrottleConfig{AddressBurst: 10000, AddressInterval: time.Millisecond,
			AccountFreeFailures: 100, AccountDelay: time.Millisecond, AccountMaxDelay: 10 * time.Millisecond},
	}
	stop, err := authdtest.Serve(listener, authdtest.Options{Config: conf, DatabaseURL: databaseURL, Kube: suite.AuthdUser.Config(),
		Scheme: suite.Scheme, SigningKeysNamespace: operatorNamespace, Log: GinkgoLogr})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	Eventually(func() (int, error) {
		resp, err := http.Get(authdURL + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}).Should(Equal(http.StatusOK))
}
