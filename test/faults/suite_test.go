// Package faults_test breaks what the operator depends on while it works — its own process, its
// leader, PostgreSQL, the API server, rows and RBAC changed by hand — and checks that everything
// converges, exactly once, afterwards. The manager (and authd) run as real processes built from
// cmd/, against an envtest control plane whose API server can be restarted.
package faults_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// binDir holds the manager and authd built for the suite.
var binDir string

const operatorNamespace = "tenancy-system"

func TestFaults(t *testing.T) {
	testenv.SkipIfShort(t, "envtest, PostgreSQL and the manager and authd built from cmd/")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	SetDefaultConsistentlyPollingInterval(time.Second)
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Faults")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	var err error
	binDir, err = os.MkdirTemp("", "tenancy-faults-bin-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, binDir)
	// Built with the race detector when the tests are, so that `go test -race` also watches the
	// manager and authd under faults (and shares its build cache).
	Expect(testenv.BuildBinaries(ctx, binDir, raceEnabled, "./cmd/manager", "./cmd/authd")).To(Succeed())
}, NodeTimeout(15*time.Minute))

// stack is one spec's world: an envtest control plane whose API server can be restarted on the
// same port and certificates, the manager's and authd's identities and RBAC, webhook
// configurations pointing at a local port, and a database.
type stack struct {
	env  *envtest.Environment
	kube client.Client // a cluster admin (system:masters)
	dir  string        // logs, kubeconfigs, certificates
	// databaseURL is the superuser URL the manager and the spec use.
	databaseURL string
	sql         *pgxpool.Pool
	// webhookPort is where the API server calls the webhooks.
	webhookPort                        int
	adminKubeconfig, managerKubeconfig string
	authdKubeconfig                    string
}

// newStack starts a control plane for the spec and prepares everything a manager process needs,
// with databaseURL as its database. Everything stops when the spec ends.
func newStack(ctx context.Context, databaseURL string) *stack {
	GinkgoHelper()
	s := &stack{dir: GinkgoT().TempDir(), databaseURL: databaseURL}
	// A fixed certificate directory survives an API server restart (envtest removes and replaces
	// a temporary one), so clients keep trusting the restarted server.
	certDir := filepath.Join(s.dir, "apiserver")
	Expect(os.Mkdir(certDir, 0o700)).To(Succeed())
	apiServerLog, err := os.Create(filepath.Join(s.dir, "kube-apiserver.log"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(apiServerLog.Close)
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		DatabaseURL: databaseURL,
		PrepareControlPlane: func(env *envtest.Environment) error {
			env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir, Out: apiServerLog, Err: apiServerLog}
			// kube-apiserver stops listening at once on SIGTERM, then may wait a long time for its
			// clients' requests; envtest kills it after this.
			env.ControlPlaneStopTimeout = 5 * time.Second
			return nil
		},
		OperatorNamespace:  operatorNamespace,
		Policies:           true,
		ManagerRBAC:        true,
		LeaderElectionRBAC: true,
		AuthdRBAC:          true,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		if CurrentSpecReport().Failed() {
			data, _ := os.ReadFile(apiServerLog.Name())
			GinkgoWriter.Printf("\n===== kube-apiserver (last 100 lines) =====\n%s\n", lastLines(string(data), 100))
		}
		Expect(suite.Stop(ctx)).To(Succeed())
	})
	s.env, s.sql = suite.Env, suite.Pool
	cfg := rest.CopyConfig(suite.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	s.kube, err = client.New(cfg, client.Options{Scheme: suite.Scheme})
	Expect(err).NotTo(HaveOccurred())

	s.webhookPort, err = testenv.FreePort()
	Expect(err).NotTo(HaveOccurred())
	Expect(testenv.InstallWebhookConfigurations(ctx, s.kube, fmt.Sprintf("https://127.0.0.1:%d", s.webhookPort))).To(Succeed())

	admin, err := s.env.AddUser(envtest.User{Name: "faults-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	s.adminKubeconfig = s.writeKubeconfig(admin, "admin.kubeconfig")
	s.managerKubeconfig = s.writeKubeconfig(suite.ManagerUser, "manager.kubeconfig")
	s.authdKubeconfig = s.writeKubeconfig(suite.AuthdUser, "authd.kubeconfig")
	return s
}

func (s *stack) writeKubeconfig(user *envtest.AuthenticatedUser, name string) string {
	GinkgoHelper()
	data, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(s.dir, name)
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}

// startControllerManager runs kube-controller-manager's garbage collector and namespace
// controller, so that deleting an organization's namespace deletes (and waits for) what it holds.
func (s *stack) startControllerManager() {
	GinkgoHelper()
	p, err := testenv.StartControllerManager(s.env, s.adminKubeconfig, filepath.Join(s.dir, "kube-controller-manager.log"))
	Expect(err).NotTo(HaveOccurred())
	s.stopWithSpec(p)
}

// managerOptions are the flags that differ between the specs' managers.
type managerOptions struct {
	resyncPeriod time.Duration
	leaderElect  bool
	// webhookPort, when not zero, replaces the stack's: a standby replica serves elsewhere.
	webhookPort int
	publicURL   string
}

// manager is a running manager process with its metrics endpoint.
type manager struct {
	*testenv.Process
	metricsURL string
}

// startManager runs cmd/manager as the operator's service account, with webhooks on a
// self-signed certificate (as `make dev` does), and returns once the process runs; callers wait
// for what they need (webhooks, the lease).
func (s *stack) startManager(name string, o managerOptions) *manager {
	GinkgoHelper()
	metricsPort, err := testenv.FreePort()
	Expect(err).NotTo(HaveOccurred())
	webhookPort := s.webhookPort
	if o.webhookPort != 0 {
		webhookPort = o.webhookPort
	}
	publicURL := o.publicURL
	if publicURL == "" {
		publicURL = "http://127.0.0.1:8090"
	}
	args := []string{
		"--kubeconfig=" + s.managerKubeconfig, "--database-url=" + s.databaseURL,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort), "--health-probe-bind-address=127.0.0.1:0",
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--namespace=" + operatorNamespace,
		"--resync-period=" + o.resyncPeriod.String(), "--public-url=" + publicURL,
		fmt.Sprintf("--leader-elect=%t", o.leaderElect),
	}
	p, err := testenv.StartProcess(name, filepath.Join(s.dir, name+".log"), filepath.Join(binDir, "manager"), args...)
	Expect(err).NotTo(HaveOccurred())
	s.stopWithSpec(p)
	return &manager{Process: p, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)}
}

// stopWithSpec stops p when the spec ends, shows its log when the spec failed, and fails the
// spec when the race detector reported a data race in it.
func (s *stack) stopWithSpec(p *testenv.Process) {
	DeferCleanup(func() {
		_ = p.Stop(30 * time.Second)
		log := p.Log()
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("\n===== %s (last 200 lines of %s) =====\n%s\n", p.Name, p.LogPath, lastLines(log, 200))
		}
		Expect(log).NotTo(ContainSubstring("WARNING: DATA RACE"), "%s: the race detector found a data race; see %s", p.Name, p.LogPath)
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitForWebhooks waits until the API server reaches a manager's webhooks with the CA it
// injected: a dry-run create goes through both webhooks and stores nothing.
func (s *stack) waitForWebhooks(ctx context.Context) {
	GinkgoHelper()
	probe := &unstructured.Unstructured{}
	probe.SetAPIVersion("tenancy.dev/v1alpha1")
	probe.SetKind("Organization")
	probe.SetName("webhook-probe")
	Eventually(func() error {
		return s.kube.Create(ctx, probe.DeepCopy(), client.DryRunAll)
	}).WithContext(ctx).Should(Succeed())
}

// newDatabase creates a database for the spec on the shared test server.
func newDatabase(ctx context.Context) string {
	GinkgoHelper()
	database, err := testenv.NewDatabase(ctx, "faults")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(database.Drop)
	return database.URL
}
