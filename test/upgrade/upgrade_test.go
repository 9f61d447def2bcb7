// Package upgrade_test proves that an installation of the previous release (previousRelease)
// moves to this one without losing anything.
//
// It builds the previous release's manager from the git history and this tree's manager, and
// installs the previous release's manifests (CRDs, RBAC, admission policy, webhook
// configurations) into an envtest control plane with a fresh PostgreSQL database. The previous
// manager runs and makes tenants from the previous release's own config/samples, and the test
// records what users depend on: the objects' UIDs and generations, their rows whole (ids
// included), the API keys and invitations issued, the Secrets holding them and the signing keys,
// the applied migrations and the TenantTables' row-level security. Then it stops that manager,
// applies this release's manifests over the old ones with server-side apply, as `kubectl apply
// --server-side` does, and starts two replicas of this release at once, with leader election,
// against the same database.
//
// It checks that the replicas applied each pending migration exactly once between them and left
// the old ones alone; that the leader's first pass over every object leaves it Ready at its
// generation, with the same UID, rows and Secrets as before; that every API key the previous
// release issued still trades for an access token at this release's authd; that the new
// webhooks admit and refuse; that a tenant created after the upgrade becomes Ready; and that the
// standby takes over, and reconciles, when the leader dies.
package upgrade_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

const operatorNamespace = "tenancy-system"

var (
	// previousTree is previousRelease's source tree; previousManager and currentManager are the
	// two releases' cmd/manager.
	previousTree, previousManager, currentManager string
)

func TestUpgrade(t *testing.T) {
	testenv.SkipIfShort(t, "envtest, PostgreSQL, the git history, and managers built from it and from cmd/")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Upgrade")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	dir, err := os.MkdirTemp("", "tenancy-upgrade-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	previousTree = filepath.Join(dir, previousRelease)
	Expect(os.Mkdir(previousTree, 0o755)).To(Succeed())
	exportRelease(ctx, previousRelease, previousTree)

	start := time.Now()
	previousBin := filepath.Join(dir, "bin-"+previousRelease)
	Expect(os.Mkdir(previousBin, 0o755)).To(Succeed())
	previousManager = buildReleaseManager(ctx, previousTree, previousBin)
	GinkgoWriter.Printf("Built the manager of %s in %s\n", previousRelease, time.Since(start).Round(time.Second))

	start = time.Now()
	currentBin := filepath.Join(dir, "bin-current")
	Expect(testenv.BuildBinaries(ctx, currentBin, false, "./cmd/manager")).To(Succeed())
	currentManager = filepath.Join(currentBin, "manager")
	GinkgoWriter.Printf("Built this tree's manager in %s\n", time.Since(start).Round(time.Second))
}, NodeTimeout(20*time.Minute))

// world is the spec's cluster and database: an envtest control plane without CRDs (each
// release installs its own), a database of its own, and the manager's identity.
type world struct {
	suite             *testenv.Suite
	kube              client.Client // a cluster admin (system:masters), as a person would be
	sql               *pgxpool.Pool
	dir               string // logs, kubeconfigs, certificates
	managerKubeconfig string
}

func newWorld(ctx context.Context) *world {
	GinkgoHelper()
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name: "upgrade",
		PrepareControlPlane: func(env *envtest.Environment) error {
			env.CRDDirectoryPaths, env.ErrorIfCRDPathMissing = nil, false
			return nil
		},
		OperatorNamespace: operatorNamespace,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	w := &world{suite: suite, sql: suite.Pool, dir: GinkgoT().TempDir()}
	cfg := rest.CopyConfig(suite.Config)
	cfg.QPS, cfg.Burst = 200, 400
	w.kube, err = client.New(cfg, client.Options{Scheme: suite.Scheme})
	Expect(err).NotTo(HaveOccurred())
	user, err := testenv.ManagerUser(suite.Env)
	Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	w.managerKubeconfig = w.writeFile("manager.kubeconfig", kubeconfig)
	return w
}

var _ = Describe("Upgrading from the previous release", func() {
	It("keeps every tenant, row, key and Secret, and converges under two replicas of this release", func(ctx SpecContext) {
		w := newWorld(ctx)
		tenants := sampleTenants(previousTree, []tenant{{name: "acme", ownNamespace: true}, {name: "globex"}, {name: "initech", ownNamespace: true}})

		By("installing " + previousRelease + " and running its manager")
		previousPort := freePort()
		installRelease(ctx, w.kube, previousTree, webhookURL(previousPort))
		previous := w.startManager("manager-"+previousRelease, previousManager, previousPort)
		w.waitForWebhooks(ctx, previous)

		By("creating tenants from the previous release's config/samples")
		w.createTables(ctx, tenants)
		applyTenants(ctx, w.kube, tenants)
		waitAllReady(ctx, w.kube, tenants)
		signingKeys := client.ObjectKey{Namespace: operatorNamespace, Name: signing.SecretName}
		Eventually(func() error { return w.kube.Get(ctx, signingKeys, &corev1.Secret{}) }).WithContext(ctx).
			Should(Succeed(), "the previous manager makes the signing keys, in the Secret %s", signingKeys)
		before := w.takeSnapshot(ctx, tenants)
		Expect(before.Secrets).To(HaveKey(signingKeys.String()), "the signing keys are a Secret the operator manages")
		previousMigrations, err := filepath.Glob(filepath.Join(previousTree, "internal", "db", "migrations", "*.sql"))
		Expect(err).NotTo(HaveOccurred())
		Expect(before.Migrations).To(HaveLen(len(previousMigrations)), "the migrations %s applied", previousRelease)
		Expect(before.APIKeys).NotTo(BeEmpty())
		Expect(before.Policies).NotTo(BeEmpty())
		GinkgoWriter.Printf("Recorded %d objects, %d organizations, %d projects, %d memberships, %d API keys, %d TenantTables, "+
			"%d Secrets and %d migrations\n", len(before.Objects), len(before.Organizations), len(before.Projects),
			len(before.Memberships), len(before.APIKeys), len(before.Policies), len(before.Secrets), len(before.Migrations))

		By("stopping the previous manager")
		Expect(previous.Stop(time.Minute)).To(Succeed(), "%s did not stop cleanly", previous.Name)

		By("applying this release's manifests over the previous release's")
		portA, portB := freePort(), freePort()
		installRelease(ctx, w.kube, testenv.RepoRoot(), webhookURL(portA))

		By("starting two replicas of this release at once, against the same database")
		a := w.startManager("manager-a", currentManager, portA)
		b := w.startManager("manager-b", currentManager, portB)
		replicas := []*manager{a, b}

		By("checking that the two applied each pending migration exactly once between them")
		embedded, err := db.Migrations()
		Expect(err).NotTo(HaveOccurred())
		applied := map[string]int{}
		Eventually(func(g Gomega) {
			for _, m := range replicas {
				m.expectRunning(g)
				n, ok := m.migrationsApplied()
				g.Expect(ok).To(BeTrue(), "%s has not logged \"Database schema migrated\"", m.Name)
				applied[m.Name] = n
			}
		}).WithContext(ctx).Should(Succeed())
		Expect(applied[a.Name]+applied[b.Name]).To(Equal(len(embedded)-len(before.Migrations)),
			"migrations applied by each replica: %v; %d were pending", applied, len(embedded)-len(before.Migrations))
		migrations := w.readMigrations(ctx)
		Expect(migrations).To(HaveLen(len(embedded)), "rows of tenancy.schema_migrations")
		for i, m := range embedded {
			Expect(migrations[i]).To(And(HaveField("Version", m.Version), HaveField("Name", m.Name), HaveField("Checksum", m.Checksum)),
				"tenancy.schema_migrations against the embedded migration %04d_%s", m.Version, m.Name)
		}
		Expect(cmp.Diff(before.Migrations, migrations[:len(before.Migrations)])).To(BeEmpty(),
			"the previous release's migrations must stay as they were applied (-before +after)")

		By("waiting for the leader's first pass over every object of the previous release")
		leader, standby := w.eventuallyLeader(ctx, replicas, nil)
		Eventually(func(g Gomega) {
			leader.expectPassDone(g, ctx, controllerCounts(tenants))
			expectAllReady(g, ctx, w.kube, tenants)
		}).WithContext(ctx).Should(Succeed())
		samples, err := metrics(ctx, standby.metricsURL)
		Expect(err).NotTo(HaveOccurred())
		for controller := range controllerCounts(tenants) {
			Expect(reconciles(samples, controller)).To(BeZero(), "the standby %s must not reconcile (%s)", standby.Name, controller)
		}

		By("comparing the objects, rows and Secrets with the record from before the upgrade")
		after := w.takeSnapshot(ctx, tenants)
		for _, part := range []struct {
			what          string
			before, after any
		}{
			{"objects (UID, generation, status.id, status.keyID)", before.Objects, after.Objects},
			{"tenancy.organizations", before.Organizations, after.Organizations},
			{"tenancy.projects", before.Projects, after.Projects},
			{"tenancy.memberships", before.Memberships, after.Memberships},
			{"tenancy.invitations", before.Invitations, after.Invitations},
			{"tenancy.api_keys", before.APIKeys, after.APIKeys},
			{"the TenantTables' row-level security", before.Policies, after.Policies},
		} {
			Expect(cmp.Diff(part.before, part.after)).To(BeEmpty(), "%s changed in the upgrade (-before +after)", part.what)
		}
		for key, secret := range before.Secrets {
			Expect(after.Secrets).To(HaveKeyWithValue(key, secret), "the Secret %s changed or went in the upgrade", key)
		}

		By("trading every API key of the previous release for an access token at this release's authd")
		authd := w.startAuthd(ctx)
		w.expectKeysWork(ctx, authd, tenants, after)

		By("checking that this release's webhooks admit and refuse")
		w.waitForWebhooks(ctx, a)
		unbound := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "no-organization"}}
		Expect(w.kube.Create(ctx, unbound)).To(Succeed())
		stray := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: unbound.Name, Name: "stray"}}
		Expect(w.kube.Create(ctx, stray, client.DryRunAll)).To(MatchError(ContainSubstring("admission webhook")),
			"a Project in a namespace of no Organization must be refused by the validating webhook")

		By("creating a tenant from this release's config/samples after the upgrade")
		newTenant := withoutKnown(sampleTenants(testenv.RepoRoot(), []tenant{{name: "umbrella", ownNamespace: true}}), tenants)
		w.createTables(ctx, newTenant)
		applyTenants(ctx, w.kube, newTenant)
		waitAllReady(ctx, w.kube, newTenant)
		w.expectKeysWork(ctx, authd, newTenant, w.takeSnapshot(ctx, newTenant))

		By("killing the leader: the standby takes the lease over and reconciles")
		leader.Kill()
		if leader == a {
			// envtest has no Service to drop the dead replica from: point the webhooks at the other.
			pointWebhooks(ctx, w.kube, testenv.RepoRoot(), webhookURL(portB))
		}
		w.eventuallyLeader(ctx, []*manager{standby}, leader)
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: "umbrella", Name: "after-failover"},
			Spec: tenancyv1.ProjectSpec{DisplayName: "Created after the failover"}}
		Eventually(func() error { return w.kube.Create(ctx, project.DeepCopy()) }).WithContext(ctx).Should(Succeed(), "creating Project %s", name(project))
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(tenancyv1.GroupVersion.WithKind("Project"))
		obj.SetNamespace(project.Namespace)
		obj.SetName(project.Name)
		waitAllReady(ctx, w.kube, append(tenants, append(newTenant, obj)...))
		Eventually(func(g Gomega) { standby.expectPassDone(g, ctx, map[string]int{"project": 1}) }).WithContext(ctx).Should(Succeed())
	}, SpecTimeout(20*time.Minute))
})

// createTables creates the application tables the TenantTables among objs name, as their
// application would: a bigserial id, the organization column (and the project column, when
// named) and a body.
func (w *world) createTables(ctx context.Context, objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, obj := range objs {
		if obj.GetKind() != "TenantTable" {
			continue
		}
		spec := func(field, def string) string {
			v, _, _ := unstructured.NestedString(obj.Object, "spec", field)
			if v == "" {
				return def
			}
			return v
		}
		columns := "id bigserial PRIMARY KEY, " + quote(spec("organizationColumn", "org_id")) + " uuid NOT NULL, body text NOT NULL"
		if project := spec("projectColumn", ""); project != "" {
			columns += ", " + quote(project) + " uuid"
		}
		_, err := w.sql.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (%s)", quote(spec("schema", "public")), quote(spec("table", "")), columns))
		Expect(err).NotTo(HaveOccurred(), "creating the table of TenantTable %s", obj.GetName())
	}
}

func quote(identifier string) string { return `"` + identifier + `"` }

// withoutKnown drops from objs those in known (same kind, namespace and name).
func withoutKnown(objs, known []*unstructured.Unstructured) []*unstructured.Unstructured {
	seen := map[string]bool{}
	for _, obj := range known {
		seen[obj.GetKind()+" "+name(obj)] = true
	}
	var rest []*unstructured.Unstructured
	for _, obj := range objs {
		if !seen[obj.GetKind()+" "+name(obj)] {
			rest = append(rest, obj)
		}
	}
	return rest
}

// eventuallyLeader waits until exactly one of replicas leads, and none of the others does, and
// returns it and (with two replicas) the other one. A dead previous leader is not asked.
func (w *world) eventuallyLeader(ctx context.Context, replicas []*manager, previous *manager) (leader, standby *manager) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		leader, standby = nil, nil
		for _, m := range replicas {
			m.expectRunning(g)
			leads, err := m.leads(ctx)
			g.Expect(err).NotTo(HaveOccurred(), "reading the metrics of %s", m.Name)
			switch {
			case leads && leader != nil:
				g.Expect(leads).To(BeFalse(), "%s and %s both lead", leader.Name, m.Name)
			case leads:
				leader = m
			default:
				standby = m
			}
		}
		g.Expect(leader).NotTo(BeNil(), "no replica holds the lease %s/%s", operatorNamespace, leaseName)
	}).WithContext(ctx).Should(Succeed())
	if previous != nil {
		Expect(leader).NotTo(BeIdenticalTo(previous))
	}
	return leader, standby
}

// waitForWebhooks waits until the API server reaches the webhooks of m with the CA it injected:
// a dry-run create goes through both webhooks and stores nothing.
func (w *world) waitForWebhooks(ctx context.Context, m *manager) {
	GinkgoHelper()
	probe := &unstructured.Unstructured{}
	probe.SetGroupVersionKind(tenancyv1.GroupVersion.WithKind("Organization"))
	probe.SetName("webhook-probe")
	Eventually(func(g Gomega) {
		m.expectRunning(g)
		g.Expect(w.kube.Create(ctx, probe.DeepCopy(), client.DryRunAll)).To(Succeed(), "a dry-run create through the webhooks of %s", m.Name)
	}).WithContext(ctx).Should(Succeed())
}

func freePort() int {
	GinkgoHelper()
	port, err := testenv.FreePort()
	Expect(err).NotTo(HaveOccurred())
	return port
}

func webhookURL(port int) string { return fmt.Sprintf("https://127.0.0.1:%d", port) }
