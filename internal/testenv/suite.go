package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// The test tiers. `make unit` runs `go test -short ./...`: every test that needs nothing but Go
// (rules, RBAC plans, token and key formats, reconcile helpers, fuzz seed corpora). A test that
// needs an envtest control plane, PostgreSQL, Chromium or binaries built from the repository
// skips itself under -short with SkipIfShort (a Ginkgo suite in its Test function, before
// RunSpecs). Under -short this package also refuses to find or start envtest or PostgreSQL
// (StartSuite, NewDatabase, ServerURL, NewControlPlane, BinaryAssets fail, saying so), so a test
// that forgets to skip fails `make unit` at once instead of quietly making it slow and dependent.

// Short reports whether the tests run with -short (`make unit`). It is false outside tests, as in
// hack/devstack, and before the test flags are parsed.
func Short() bool {
	return testing.Testing() && flag.Parsed() && testing.Short()
}

// SkipIfShort skips t under -short (`make unit`): t needs what only `make test` provides, which
// needs says ("envtest and PostgreSQL", say). A Ginkgo suite calls it in its Test function before
// RunSpecs, so that the whole suite is reported as skipped, with the reason.
func SkipIfShort(t testing.TB, needs string) {
	t.Helper()
	if Short() {
		t.Skipf("needs %s: skipped under -short (make unit); make test runs it", needs)
	}
}

// refuseUnderShort is the error of what testenv will not do under -short.
func refuseUnderShort(what string) error {
	if !Short() {
		return nil
	}
	return fmt.Errorf("testenv: %s under -short (make unit), which runs without envtest, PostgreSQL or Chromium: "+
		"skip the test with testenv.SkipIfShort (a Ginkgo suite in its Test function, before RunSpecs)", what)
}

// SuiteOptions says what a suite's world holds. The zero value is a database and a control plane
// with the tenancy CRDs, a cluster admin, and nothing else.
type SuiteOptions struct {
	// Name names the suite's database: tenancy_test_<Name>_<random>, dropped by Stop.
	Name string
	// DatabaseURL, when set, is a superuser URL of the database to use instead of a new one; Stop
	// leaves it alone.
	DatabaseURL string
	// Proxy puts a TCP proxy (Suite.Proxy) in front of the database, which specs can cut to make
	// PostgreSQL unreachable without stopping the server; Suite.ProxiedURL goes through it.
	Proxy bool

	// Webhooks makes the control plane call the admission webhooks of config/webhook at a local
	// server with envtest's certificate (Env.WebhookInstallOptions); Manager.Webhooks serves them.
	Webhooks bool
	// PrepareControlPlane, when set, adjusts the control plane before it starts.
	PrepareControlPlane func(*envtest.Environment) error

	// OperatorNamespace, when set, is created.
	OperatorNamespace string
	// Policies installs config/policy's ValidatingAdmissionPolicies.
	Policies bool
	// ManagerRBAC grants ManagerUsername config/rbac's ClusterRole and nothing else, and adds that
	// user (Suite.ManagerUser, Suite.ManagerClient).
	ManagerRBAC bool
	// LeaderElectionRBAC grants ManagerUsername config/rbac's leader-election Role in
	// OperatorNamespace.
	LeaderElectionRBAC bool
	// AuthdRBAC grants AuthdUsername config/authd's roles (the signing-keys Role in
	// OperatorNamespace) and adds that user (Suite.AuthdUser).
	AuthdRBAC bool

	// BeforeManager, when set, runs once the control plane is ready and the above installed,
	// before the manager starts: to install what a suite of its own needs (RBAC of its users, say).
	BeforeManager func(context.Context, *Suite) error
	// Manager, when set, runs the manager in the test process for the rest of the suite.
	Manager *SuiteManager
	// Log is the manager's logger; a suite passes GinkgoLogr.
	Log logr.Logger
}

// SuiteManager says how the suite runs the manager: wired as cmd/manager wires it (StartManager),
// as ManagerUsername with config/rbac's role when SuiteOptions.ManagerRBAC is set, else as the
// cluster admin.
type SuiteManager struct {
	// Controllers, when set, runs the controllers.
	Controllers *controllers.Settings
	// Webhooks, when set, serves the admission webhooks (SuiteOptions.Webhooks must be set), and
	// StartSuite returns once the API server reaches them.
	Webhooks *webhooks.Settings
	// ThroughProxy makes the manager reach PostgreSQL through Suite.Proxy, so that cutting the
	// proxy cuts the manager off.
	ThroughProxy bool
	// SMTP, when set, makes the controllers mail invitations through it (Email delivery by default).
	SMTP *mail.SMTPConfig
}

// Suite is a running world: a database and an envtest control plane, with what SuiteOptions
// asked for. Stop ends all of it.
type Suite struct {
	Env    *envtest.Environment
	Scheme *runtime.Scheme
	// Config and Client are a cluster admin's (system:masters), as a person would be.
	Config *rest.Config
	Client client.Client
	// ManagerUser and ManagerClient act as ManagerUsername (SuiteOptions.ManagerRBAC).
	ManagerUser   *envtest.AuthenticatedUser
	ManagerClient client.Client
	// AuthdUser acts as AuthdUsername (SuiteOptions.AuthdRBAC).
	AuthdUser *envtest.AuthenticatedUser

	// Database is the suite's own database; nil when SuiteOptions.DatabaseURL was given.
	Database *Database
	// DatabaseURL is the database's superuser URL, straight to the server.
	DatabaseURL string
	// Pool connects to DatabaseURL as the superuser; it is never cut.
	Pool *pgxpool.Pool
	// Proxy and ProxiedURL reach the database through a proxy specs can cut (SuiteOptions.Proxy).
	Proxy      *Proxy
	ProxiedURL string

	// stops undo what StartSuite did, in order.
	stops []func(context.Context) error
}

// webhooksReadyTimeout is how long StartSuite waits for the manager's webhooks to answer.
const webhooksReadyTimeout = 30 * time.Second

// StartSuite starts what o asks for. On error it stops whatever it had started. Under -short it
// refuses (see SkipIfShort). A Ginkgo suite calls it in its BeforeSuite and hands Stop to
// DeferCleanup:
//
//	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{Name: "controllers", ...})
//	Expect(err).NotTo(HaveOccurred())
//	DeferCleanup(suite.Stop)
func StartSuite(ctx context.Context, o SuiteOptions) (s *Suite, err error) {
	if err := refuseUnderShort("StartSuite"); err != nil {
		return nil, err
	}
	if o.Manager != nil && o.Manager.Webhooks != nil && !o.Webhooks {
		return nil, errors.New("testenv.StartSuite: Manager.Webhooks needs SuiteOptions.Webhooks")
	}
	if (o.LeaderElectionRBAC || o.AuthdRBAC) && o.OperatorNamespace == "" {
		return nil, errors.New("testenv.StartSuite: LeaderElectionRBAC and AuthdRBAC need SuiteOptions.OperatorNamespace")
	}
	if o.Manager != nil && o.Manager.ThroughProxy && !o.Proxy {
		return nil, errors.New("testenv.StartSuite: Manager.ThroughProxy needs SuiteOptions.Proxy")
	}
	s = &Suite{}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
			s = nil
		}
	}()
	if err := s.startDatabase(ctx, o); err != nil {
		return s, err
	}
	if err := s.startControlPlane(ctx, o); err != nil {
		return s, err
	}
	if o.BeforeManager != nil {
		if err := o.BeforeManager(ctx, s); err != nil {
			return s, err
		}
	}
	if o.Manager != nil {
		if err := s.startManager(ctx, o); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Stop ends everything StartSuite started, the last first, and drops the suite's database.
func (s *Suite) Stop(ctx context.Context) error {
	var errs []error
	for _, stop := range slices.Backward(s.stops) {
		errs = append(errs, stop(ctx))
	}
	s.stops = nil
	return errors.Join(errs...)
}

func (s *Suite) onStop(stop func(context.Context) error) { s.stops = append(s.stops, stop) }

func (s *Suite) startDatabase(ctx context.Context, o SuiteOptions) error {
	s.DatabaseURL = o.DatabaseURL
	if s.DatabaseURL == "" {
		database, err := NewDatabase(ctx, o.Name)
		if err != nil {
			return err
		}
		s.onStop(database.Drop)
		s.Database, s.DatabaseURL = database, database.URL
	}
	pool, err := pgxpool.New(ctx, s.DatabaseURL)
	if err != nil {
		return err
	}
	s.onStop(func(context.Context) error { pool.Close(); return nil })
	s.Pool = pool
	if o.Proxy {
		proxy, proxiedURL, err := proxied(s.DatabaseURL)
		if err != nil {
			return err
		}
		s.onStop(func(context.Context) error { return proxy.Close() })
		s.Proxy, s.ProxiedURL = proxy, proxiedURL
	}
	return nil
}

// proxied is Database.Proxied for any database URL.
func proxied(databaseURL string) (*Proxy, string, error) {
	return (&Database{URL: databaseURL}).Proxied()
}

func (s *Suite) startControlPlane(ctx context.Context, o SuiteOptions) error {
	env, err := NewControlPlane()
	if err != nil {
		return err
	}
	if o.Webhooks {
		if err := WithWebhooks(env); err != nil {
			return err
		}
	}
	if o.PrepareControlPlane != nil {
		if err := o.PrepareControlPlane(env); err != nil {
			return err
		}
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	s.onStop(func(context.Context) error { return env.Stop() })
	s.Env, s.Config, s.Scheme = env, cfg, Scheme()
	if s.Client, err = client.New(cfg, client.Options{Scheme: s.Scheme}); err != nil {
		return err
	}

	if o.OperatorNamespace != "" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.OperatorNamespace}}
		if err := s.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", o.OperatorNamespace, err)
		}
	}
	if o.Policies {
		if err := InstallPolicies(ctx, s.Client); err != nil {
			return err
		}
	}
	if o.ManagerRBAC {
		if err := InstallManagerRBAC(ctx, s.Client); err != nil {
			return err
		}
		if s.ManagerUser, err = ManagerUser(env); err != nil {
			return err
		}
		if s.ManagerClient, err = client.New(s.ManagerUser.Config(), client.Options{Scheme: s.Scheme}); err != nil {
			return err
		}
	}
	if o.LeaderElectionRBAC {
		if err := InstallLeaderElectionRBAC(ctx, s.Client, o.OperatorNamespace); err != nil {
			return err
		}
	}
	if o.AuthdRBAC {
		if err := InstallAuthdRBAC(ctx, s.Client, o.OperatorNamespace); err != nil {
			return err
		}
		if s.AuthdUser, err = AuthdUser(env); err != nil {
			return err
		}
	}
	return nil
}

func (s *Suite) startManager(ctx context.Context, o SuiteOptions) error {
	m := Manager{
		Config: s.Config, Scheme: s.Scheme, DatabaseURL: s.DatabaseURL, Log: o.Log,
		Controllers: o.Manager.Controllers, Webhooks: o.Manager.Webhooks, SMTP: o.Manager.SMTP,
	}
	if s.ManagerUser != nil {
		m.Config = s.ManagerUser.Config()
	}
	if o.Manager.ThroughProxy {
		m.DatabaseURL = s.ProxiedURL
	}
	if o.Manager.Webhooks != nil {
		m.WebhookInstall = &s.Env.WebhookInstallOptions
	}
	stop, err := StartManager(m)
	if err != nil {
		return err
	}
	s.onStop(func(context.Context) error { stop(); return nil })
	if o.Manager.Webhooks != nil {
		return s.waitForWebhooks(ctx)
	}
	return nil
}

// waitForWebhooks returns once the API server reaches the manager's webhooks (its server is up and
// its cache synced): a dry-run create goes through them and stores nothing.
func (s *Suite) waitForWebhooks(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, webhooksReadyTimeout)
	defer cancel()
	probe := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}
	for {
		err := s.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the manager's webhooks did not answer within %s: %w", webhooksReadyTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
