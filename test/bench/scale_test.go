package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// The scale of BenchmarkScale: per organization, its Projects, Memberships and APIKeys.
const (
	scaleOrganizations     = 2000
	scaleProjectsPerOrg    = 5
	scaleMembershipsPerOrg = 10
	scaleAPIKeysPerOrg     = 1
	scaleObjectsPerOrg     = 1 + scaleProjectsPerOrg + scaleMembershipsPerOrg + scaleAPIKeysPerOrg
	scaleOrganizationsEnv  = "TENANCY_SCALE_ORGANIZATIONS"
	scaleManagerFlagsEnv   = "TENANCY_SCALE_MANAGER_FLAGS"
	scaleProfileEnv        = "TENANCY_SCALE_PROFILE"
	scaleProfileSeconds    = 10
	scaleCeilingNamespaces = 20
	scaleOperatorNamespace = "tenancy-system"
	scaleReadyTimeout      = 60 * time.Minute
)

// BenchmarkScale applies 2,000 Organizations with 10,000 Projects, 20,000 Memberships and 2,000
// APIKeys (each tenant as GitOps would: its Namespace first, then its Organization and the rest)
// to an API server that calls the webhooks of a manager built from cmd/manager and run as its own
// process, and measures:
//
//   - ready-objects/s: objects made Ready per second, from the first create until every one is
//     Ready, next to ceiling-objects/s: the objects per second the same API server accepts from
//     one client that writes each object's create, finalizer and status itself (measured at the
//     end of the run, with the manager stopped and the webhook configurations removed);
//   - peak-rss-MiB: the manager's VmHWM once everything is Ready;
//   - cold-start-s: how long a restarted manager takes to reconcile every object once, and the API
//     writes and changed database rows that restart caused (both should be zero);
//   - resync-api-writes and resync-db-rows: the same for one periodic resync of every object.
//
// TENANCY_SCALE_ORGANIZATIONS runs it with fewer organizations (same shape per organization);
// TENANCY_SCALE_MANAGER_FLAGS adds manager flags (space-separated), to compare knobs;
// TENANCY_SCALE_PROFILE=<dir> writes CPU profiles of the API server and the manager there, 10
// seconds of every minute until all is Ready (go tool pprof reads them).
func BenchmarkScale(b *testing.B) {
	ctx := context.Background()
	orgs := scaleOrganizations
	if v := os.Getenv(scaleOrganizationsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s: %q is not a positive number", scaleOrganizationsEnv, v)
		}
		orgs = n
	}
	total := orgs * scaleObjectsPerOrg
	managerBin := buildManager(b)

	env, cfg, database := startControlPlane(b, "scale")
	conn, err := pgx.Connect(ctx, database.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()

	scheme := testenv.Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	apiserver := newAPIServerMetrics(b, cfg)
	objects := startObjectCache(b, cfg)

	webhookPort := freePort(b)
	managerArgs := prepareManager(b, env, c, database.URL, webhookPort)

	first := startManagerProcess(b, managerBin, append(managerArgs, "--resync-period=1h"))
	defer first.stop(b)
	waitForWebhooks(b, c)

	// Namespaces are the tenants' own manifests, applied before the clock starts.
	parallel(b, inputWorkers, orgs, func(i int) error {
		return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantName(i)}})
	})
	cpu := newCPUMeter(b, env, first)
	apiBefore, readsBefore := apiserver.writes(b), apiserver.reads(b)
	start := time.Now()
	profilingDone := make(chan struct{})
	profiled := profileCPU(b, apiserver, first, profilingDone)
	var retries atomic.Int64
	var input time.Duration
	inputErr := make(chan error, 1)
	go func() {
		err := parallelUntilError(inputWorkers, orgs, func(i int) error {
			for _, obj := range tenantObjects(i, orgs) {
				if err := createRetrying(ctx, c, obj, &retries); err != nil {
					return fmt.Errorf("creating %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
				}
			}
			return nil
		})
		input = time.Since(start)
		inputErr <- err
	}()
	objects.waitAllReady(b, total, start, inputErr)
	elapsed := time.Since(start)
	close(profilingDone)
	b.Logf("not-Ready statuses written on the way (by kind and reason): %s", objects.tracker.waits())
	readyRate := float64(total) / elapsed.Seconds()
	b.Logf("%d objects Ready in %s (%.1f/s); input applied in %s (%.1f creates/s, %d retried); API writes until then %d %v",
		total, elapsed.Round(time.Millisecond), readyRate, input.Round(time.Millisecond), float64(total)/input.Seconds(), retries.Load(),
		apiserver.writes(b).since(apiBefore).total(), apiserver.writes(b).since(apiBefore))
	b.Logf("reads until then (gets and lists; the manager's and the benchmark's watches apart) %d %v",
		apiserver.reads(b).since(readsBefore).total(), apiserver.reads(b).since(readsBefore))
	// Organizations go on counting and granting after everything is Ready: wait until the
	// manager has nothing left to do, so that the cold start below finds the final state.
	converged := first.waitIdle(b).Sub(start)
	peakRSS := first.peakRSS(b)
	b.Logf("manager idle %s after the first create; API writes %d %v; peak RSS %.1f MiB; CPU seconds used %s",
		converged.Round(time.Millisecond), apiserver.writes(b).since(apiBefore).total(), apiserver.writes(b).since(apiBefore), peakRSS, cpu.used(b))
	profiled.Wait()
	first.stop(b)

	// A cold start: a new manager finds everything Ready and must write nothing.
	// Long enough for the cold start to finish before the first resync comes due.
	resyncPeriod := time.Duration(20+orgs/20) * time.Second
	counts := map[string]int{"organization": orgs, "project": orgs * scaleProjectsPerOrg,
		"membership": orgs * scaleMembershipsPerOrg, "apikey": orgs * scaleAPIKeysPerOrg}
	var second *managerProcess
	cold := measureQuiet(b, apiserver, objects, conn, func() time.Duration {
		second = startManagerProcess(b, managerBin, append(managerArgs, "--resync-period="+resyncPeriod.String()))
		b.Cleanup(func() { second.stop(b) })
		return second.waitReconciled(b, counts, nil)
	})
	b.Logf("cold start: every object reconciled after %s; %s", cold.took.Round(time.Millisecond), cold)

	// One periodic resync of every object.
	resync := measureQuiet(b, apiserver, objects, conn, func() time.Duration {
		return second.waitReconciled(b, counts, second.reconcileTotals(b))
	})
	b.Logf("resync: every object reconciled again %s after the cold start; %s", resync.took.Round(time.Millisecond), resync)
	second.stop(b)

	// The machine's CPU time tells whether the ceiling was the API server's limit (every core
	// busy) or the client's.
	ceilingCPU := newCPUMeter(b, env, nil)
	ceilingStart := time.Now()
	ceiling := scaleCeiling(b, c, orgs)
	b.Logf("ceiling: %.1f objects/s (create, finalizer, status each; one client, %d workers); CPU seconds used %s, of %.1f available",
		ceiling, ceilingWorkers, ceilingCPU.used(b), float64(runtime.NumCPU())*time.Since(ceilingStart).Seconds())

	b.ReportMetric(readyRate, "ready-objects/s")
	b.ReportMetric(ceiling, "ceiling-objects/s")
	b.ReportMetric(100*readyRate/ceiling, "%-of-ceiling")
	b.ReportMetric(elapsed.Seconds(), "s-to-ready")
	b.ReportMetric(converged.Seconds(), "s-to-idle")
	b.ReportMetric(peakRSS, "peak-rss-MiB")
	b.ReportMetric(cold.took.Seconds(), "cold-start-s")
	b.ReportMetric(float64(cold.api.total()), "cold-start-api-writes")
	b.ReportMetric(float64(cold.db.total()), "cold-start-db-rows")
	b.ReportMetric(float64(resync.api.total()), "resync-api-writes")
	b.ReportMetric(float64(resync.db.total()), "resync-db-rows")
}

// quietWindow is what one pass of the manager over objects that are all Ready wrote: nothing,
// when the operator is in a steady state.
type quietWindow struct {
	took      time.Duration
	api       writeCounts
	db        writeCounts
	rewritten int
}

// measureQuiet counts the API writes, rewritten tenancy objects and database rows from before
// pass until it returns.
func measureQuiet(b *testing.B, apiserver apiServerMetrics, objects objectCache, conn *pgx.Conn, pass func() time.Duration) quietWindow {
	b.Helper()
	versions := objects.resourceVersions(b)
	apiBefore := apiserver.writes(b)
	dbBefore := databaseMarkNow(b, conn)
	took := pass()
	return quietWindow{took: took, api: apiserver.writes(b).since(apiBefore), db: databaseChanges(b, conn, dbBefore),
		rewritten: objects.rewritten(b, versions)}
}

func (q quietWindow) String() string {
	return fmt.Sprintf("API writes %d %v; tenancy objects rewritten %d; database rows written %d %v",
		q.api.total(), q.api, q.rewritten, q.db.total(), q.db)
}

// parallelUntilError runs do(0..n-1) on workers goroutines and returns the first error; unlike
// parallel it may run outside the benchmark's goroutine.
func parallelUntilError(workers, n int, do func(int) error) error {
	next := make(chan int)
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func tenantName(i int) string { return fmt.Sprintf("t%d", i) }

// tenantObjects are tenant i's manifests in apply order: its Organization (Pro, so that five
// projects fit), five Projects, ten Memberships (an Owner, an Admin, three Members, five
// project-scoped) whose users each belong to two organizations, and an APIKey.
func tenantObjects(i, orgs int) []client.Object {
	ns := tenantName(i)
	objs := []client.Object{&tenancyv1.Organization{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec:       tenancyv1.OrganizationSpec{DisplayName: "Tenant " + ns, Tier: tenancyv1.TierPro},
	}}
	for p := range scaleProjectsPerOrg {
		objs = append(objs, &tenancyv1.Project{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", p), Namespace: ns},
			Spec:       tenancyv1.ProjectSpec{DisplayName: fmt.Sprintf("Project %d", p)},
		})
	}
	roles := []tenancyv1.Role{tenancyv1.RoleOwner, tenancyv1.RoleAdmin, tenancyv1.RoleMember, tenancyv1.RoleMember, tenancyv1.RoleMember}
	users := orgs * scaleMembershipsPerOrg / 2
	for m := range scaleMembershipsPerOrg {
		spec := tenancyv1.MembershipSpec{User: fmt.Sprintf("user%d@example.com", (i*scaleMembershipsPerOrg+m)%max(users, scaleMembershipsPerOrg))}
		if m < len(roles) {
			spec.Role = roles[m]
		} else {
			spec.Role = []tenancyv1.Role{tenancyv1.RoleMember, tenancyv1.RoleViewer}[m%2]
			spec.Project = fmt.Sprintf("p%d", (m-len(roles))%scaleProjectsPerOrg)
		}
		objs = append(objs, &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m%d", m), Namespace: ns}, Spec: spec})
	}
	for k := range scaleAPIKeysPerOrg {
		objs = append(objs, &tenancyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("k%d", k), Namespace: ns},
			Spec:       tenancyv1.APIKeySpec{Role: tenancyv1.RoleMember},
		})
	}
	return objs
}

// createRetrying creates obj, retrying while the webhooks say its namespace's Organization is
// not in their cache yet (the Organization was created a moment before).
func createRetrying(ctx context.Context, c client.Client, obj client.Object, retries *atomic.Int64) error {
	for attempt := 0; ; attempt++ {
		err := c.Create(ctx, obj)
		if err == nil || attempt == 50 || !strings.Contains(err.Error(), "bound to no organization") {
			return err
		}
		retries.Add(1)
		obj.SetResourceVersion("")
		time.Sleep(100 * time.Millisecond)
	}
}

func buildManager(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "manager")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/manager: %v\n%s", err, out)
	}
	return bin
}

// prepareManager installs what the manager needs in the control plane (its namespace, RBAC, the
// admission policies, webhook configurations calling 127.0.0.1:webhookPort) and returns its flags.
func prepareManager(b *testing.B, env *envtest.Environment, c client.Client, databaseURL string, webhookPort int) []string {
	b.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleOperatorNamespace}}); err != nil {
		b.Fatal(err)
	}
	if err := testenv.InstallPolicies(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := testenv.InstallManagerRBAC(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := testenv.InstallWebhookConfigurations(ctx, c, fmt.Sprintf("https://127.0.0.1:%d", webhookPort)); err != nil {
		b.Fatal(err)
	}
	user, err := testenv.ManagerUser(env)
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	kubeconfigPath := filepath.Join(dir, "manager.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{
		"--kubeconfig=" + kubeconfigPath, "--database-url=" + databaseURL, "--namespace=" + scaleOperatorNamespace,
		"--health-probe-bind-address=0",
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
	}
	return append(args, strings.Fields(os.Getenv(scaleManagerFlagsEnv))...)
}

// waitForWebhooks waits until a dry-run create passes both webhooks.
func waitForWebhooks(b *testing.B, c client.Client) {
	b.Helper()
	probe := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe"}}
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = c.Create(context.Background(), probe.DeepCopy(), client.DryRunAll); err == nil {
			return
		}
	}
	b.Fatalf("the webhooks did not answer within 2 minutes: %v", err)
}

func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// managerProcess is cmd/manager running as a child process, with its metrics on loopback.
type managerProcess struct {
	cmd     *exec.Cmd
	done    chan struct{}
	log     string
	metrics string
	pprof   string
	started time.Time
	stopped bool
}

func startManagerProcess(b *testing.B, bin string, args []string) *managerProcess {
	b.Helper()
	m := &managerProcess{
		log:     filepath.Join(b.TempDir(), "manager.log"),
		metrics: fmt.Sprintf("127.0.0.1:%d", freePort(b)),
		pprof:   fmt.Sprintf("127.0.0.1:%d", freePort(b)),
		done:    make(chan struct{}),
	}
	logFile, err := os.Create(m.log)
	if err != nil {
		b.Fatal(err)
	}
	m.cmd = exec.Command(bin, append(args, "--metrics-bind-address="+m.metrics, "--pprof-bind-address="+m.pprof)...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	// The manager must not outlive an interrupted benchmark.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		_ = m.cmd.Wait()
		_ = logFile.Close()
		close(m.done)
	}()
	return m
}

// stop ends the manager with SIGTERM, as a Deployment's rollout would; on a failed benchmark it
// shows the end of the manager's log.
func (m *managerProcess) stop(b *testing.B) {
	if m.stopped {
		return
	}
	m.stopped = true
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	if b.Failed() {
		if data, err := os.ReadFile(m.log); err == nil {
			lines := strings.Split(string(data), "\n")
			b.Logf("the manager's log ends with:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}
}

// peakRSS is the manager's VmHWM in MiB.
func (m *managerProcess) peakRSS(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib / 1024
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}

func (m *managerProcess) scrape(b *testing.B) []sample {
	b.Helper()
	resp, err := http.Get("http://" + m.metrics + "/metrics")
	if err != nil {
		return nil // not listening yet
	}
	defer resp.Body.Close()
	samples, err := parseMetrics(bufio.NewScanner(resp.Body))
	if err != nil {
		b.Fatal(err)
	}
	return samples
}

// reconcileTotals is controller_runtime_reconcile_total per controller, whatever the result.
func (m *managerProcess) reconcileTotals(b *testing.B) map[string]float64 {
	b.Helper()
	totals := map[string]float64{}
	for _, s := range m.scrape(b) {
		if s.name == "controller_runtime_reconcile_total" {
			totals[s.labels["controller"]] += s.value
		}
	}
	return totals
}

// waitReconciled waits until each controller in counts has reconciled at least that many objects
// since the totals in since, and has nothing queued or in progress; it returns the time since
// the process started.
func (m *managerProcess) waitReconciled(b *testing.B, counts map[string]int, since map[string]float64) time.Duration {
	b.Helper()
	deadline := time.Now().Add(scaleReadyTimeout)
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-m.done:
			b.Fatal("the manager exited")
		default:
		}
		samples := m.scrape(b)
		busy := map[string]float64{}
		reconciled := map[string]float64{}
		for _, s := range samples {
			switch s.name {
			case "controller_runtime_reconcile_total":
				reconciled[s.labels["controller"]] += s.value
			case "workqueue_depth", "controller_runtime_active_workers":
				controller := s.labels["controller"]
				if controller == "" {
					controller = s.labels["name"]
				}
				busy[controller] += s.value
			}
		}
		done := len(samples) > 0
		for controller, n := range counts {
			if reconciled[controller]-since[controller] < float64(n) || busy[controller] > 0 {
				done = false
			}
		}
		if done {
			return time.Since(m.started)
		}
	}
	b.Fatalf("the manager did not reconcile every object within %s: %v", scaleReadyTimeout, m.reconcileTotals(b))
	return 0
}

// waitIdle waits until no controller has had anything queued or in progress for two seconds,
// and returns when that began.
func (m *managerProcess) waitIdle(b *testing.B) time.Time {
	b.Helper()
	idleSince := time.Time{}
	for deadline := time.Now().Add(scaleReadyTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		busy := 0.0
		for _, s := range m.scrape(b) {
			if s.name == "workqueue_depth" || s.name == "controller_runtime_active_workers" {
				busy += s.value
			}
		}
		switch {
		case busy > 0:
			idleSince = time.Time{}
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) > 2*time.Second:
			return idleSince
		}
	}
	b.Fatalf("the manager was still busy after %s", scaleReadyTimeout)
	return time.Time{}
}

// cpuMeter reads the CPU time of the processes of a run, to tell where its time goes.
type cpuMeter struct {
	pids   map[string]int
	before map[string]float64
}

// newCPUMeter starts counting the CPU time of the control plane, the benchmark, PostgreSQL and
// the whole machine, and of the manager when there is one.
func newCPUMeter(b *testing.B, env *envtest.Environment, manager *managerProcess) cpuMeter {
	b.Helper()
	m := cpuMeter{pids: map[string]int{
		"benchmark":      os.Getpid(),
		"kube-apiserver": processWithArg(b, "--secure-port="+env.ControlPlane.APIServer.Port),
		"etcd":           processWithArg(b, "--listen-client-urls="+env.ControlPlane.Etcd.URL.String()),
	}}
	if manager != nil {
		m.pids["manager"] = manager.cmd.Process.Pid
	}
	m.before = m.now(b)
	return m
}

func (m cpuMeter) now(b *testing.B) map[string]float64 {
	b.Helper()
	seconds := map[string]float64{}
	for name, pid := range m.pids {
		utime, stime, _, _, err := processCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		seconds[name] = utime + stime
	}
	// PostgreSQL is a process per connection: its processes now, and through the postmaster's
	// children times those that ended.
	seconds["postgres"] = 0
	for _, pid := range processesNamed("postgres") {
		utime, stime, cutime, cstime, err := processCPU(pid)
		if err == nil {
			seconds["postgres"] += utime + stime + cutime + cstime
		}
	}
	// Every process of the machine, busy time of all cores from /proc/stat.
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:]
		for i, f := range fields {
			v, _ := strconv.ParseFloat(f, 64)
			if i != 3 && i != 4 { // idle and iowait
				seconds["machine"] += v / 100
			}
		}
	}
	return seconds
}

// processCPU reads a process's user and system CPU seconds and those of its waited-for children.
func processCPU(pid int) (utime, stime, cutime, cstime float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	// utime, stime, cutime and cstime, in clock ticks of 1/100 s, are the 12th to 15th fields
	// after the parenthesised command name.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	values := make([]float64, 4)
	for i := range values {
		values[i], _ = strconv.ParseFloat(fields[11+i], 64)
	}
	return values[0] / 100, values[1] / 100, values[2] / 100, values[3] / 100, nil
}

func (m cpuMeter) used(b *testing.B) string {
	b.Helper()
	now := m.now(b)
	var parts []string
	for _, name := range []string{"kube-apiserver", "etcd", "manager", "postgres", "benchmark", "machine"} {
		if _, measured := now[name]; measured {
			parts = append(parts, fmt.Sprintf("%s %.1f", name, now[name]-m.before[name]))
		}
	}
	return strings.Join(parts, ", ")
}

// processesNamed lists the processes whose command name is name.
func processesNamed(name string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processWithArg finds the process whose command line has arg.
func processWithArg(b *testing.B, arg string) int {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			return pid
		}
	}
	b.Fatalf("no process with %s", arg)
	return 0
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the Prometheus text format (label values without escaped quotes or commas,
// as the metrics read here have).
func parseMetrics(sc *bufio.Scanner) ([]sample, error) {
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	var samples []sample
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sep := strings.LastIndexByte(line, ' ')
		if sep < 0 {
			return nil, fmt.Errorf("metrics line without a value: %q", line)
		}
		value, err := strconv.ParseFloat(line[sep+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s := sample{name: line[:sep], labels: map[string]string{}, value: value}
		if open := strings.IndexByte(s.name, '{'); open >= 0 {
			for pair := range strings.SplitSeq(strings.TrimSuffix(s.name[open+1:], "}"), ",") {
				if k, v, ok := strings.Cut(pair, "="); ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
			s.name = s.name[:open]
		}
		samples = append(samples, s)
	}
	return samples, sc.Err()
}

// apiServerMetrics reads the API server's own request counters.
type apiServerMetrics struct{ rest rest.Interface }

func newAPIServerMetrics(b *testing.B, cfg *rest.Config) apiServerMetrics {
	b.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return apiServerMetrics{rest: cs.Discovery().RESTClient()}
}

// profileCPU writes, when TENANCY_SCALE_PROFILE names a directory, CPU profiles of the API server
// and of the manager taken at the same time: scaleProfileSeconds long, one pair a minute from the
// first create until done is closed (named by the minute they start in).
func profileCPU(b *testing.B, a apiServerMetrics, m *managerProcess, done <-chan struct{}) *sync.WaitGroup {
	b.Helper()
	var wg sync.WaitGroup
	dir := os.Getenv(scaleProfileEnv)
	if dir == "" {
		return &wg
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	seconds := strconv.Itoa(scaleProfileSeconds)
	fetchers := map[string]func() ([]byte, error){
		"kube-apiserver": func() ([]byte, error) {
			return a.rest.Get().AbsPath("/debug/pprof/profile").Param("seconds", seconds).DoRaw(context.Background())
		},
		"manager": func() ([]byte, error) {
			resp, err := http.Get("http://" + m.pprof + "/debug/pprof/profile?seconds=" + seconds)
			if err != nil {
				return nil, err
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("status %s", resp.Status)
			}
			return io.ReadAll(resp.Body)
		},
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for minute := 0; ; minute++ {
			var pair sync.WaitGroup
			for process, fetch := range fetchers {
				pair.Go(func() {
					name := fmt.Sprintf("%s-%02dm.pprof", process, minute)
					data, err := fetch()
					if err == nil {
						err = os.WriteFile(filepath.Join(dir, name), data, 0o644)
					}
					if err != nil {
						b.Errorf("profiling %s: %v", name, err)
					}
				})
			}
			pair.Wait()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return &wg
}

// writeCounts are requests the API server served, by verb and resource.
type writeCounts map[string]float64

var (
	writeVerbs = []string{"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}
	readVerbs  = []string{"GET", "LIST"}
)

// writes counts write requests by verb and resource, leaving out the leases the API server
// renews for itself (nothing else uses leases here: the manager runs without leader election).
func (a apiServerMetrics) writes(b *testing.B) writeCounts { return a.requests(b, writeVerbs) }

// reads counts gets and lists (not watches) the same way.
func (a apiServerMetrics) reads(b *testing.B) writeCounts { return a.requests(b, readVerbs) }

func (a apiServerMetrics) requests(b *testing.B, verbs []string) writeCounts {
	b.Helper()
	data, err := a.rest.Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	samples, err := parseMetrics(bufio.NewScanner(strings.NewReader(string(data))))
	if err != nil {
		b.Fatal(err)
	}
	counts := writeCounts{}
	for _, s := range samples {
		verb := s.labels["verb"]
		if s.name != "apiserver_request_total" || s.labels["resource"] == "" || s.labels["resource"] == "leases" || !slices.Contains(verbs, verb) {
			continue
		}
		resource := s.labels["resource"]
		if sub := s.labels["subresource"]; sub != "" {
			resource += "/" + sub
		}
		key := verb + " " + resource
		if code := s.labels["code"]; !strings.HasPrefix(code, "2") {
			key += " " + code // refused or failed, and most likely retried
		}
		counts[key] += s.value
	}
	return counts
}

func (w writeCounts) since(before writeCounts) writeCounts {
	delta := writeCounts{}
	for k, v := range w {
		if d := v - before[k]; d > 0 {
			delta[k] = d
		}
	}
	return delta
}

func (w writeCounts) total() int {
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	return int(sum)
}

// objectCache watches the four kinds for the benchmark: counting Ready objects from a watch
// costs the API server far less than listing 34,000 objects again and again.
type objectCache struct {
	cache   cache.Cache
	tracker *readinessTracker
}

// readinessTracker follows the watch events of the cache: how many objects are Ready for their
// generation (kept up to date as events arrive, so that waiting costs the machine nothing while
// the operator works), and the not-Ready statuses the manager wrote, by kind and reason: each is
// a status write besides the one that makes the object Ready.
type readinessTracker struct {
	mu     sync.Mutex
	ready  map[types.UID]bool
	count  int
	waited map[string]int
}

func (t *readinessTracker) observe(obj any, update bool) {
	o, ok := obj.(tenancyv1.Object)
	if !ok {
		return
	}
	status := o.CommonStatusRef()
	ready := status.ObservedGeneration == o.GetGeneration() && meta.IsStatusConditionTrue(status.Conditions, tenancyv1.ReadyCondition)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.set(o.GetUID(), ready)
	if cond := meta.FindStatusCondition(status.Conditions, tenancyv1.ReadyCondition); update && cond != nil && cond.Status != metav1.ConditionTrue {
		t.waited[fmt.Sprintf("%T %s", o, cond.Reason)]++
	}
}

func (t *readinessTracker) forget(obj any) {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if o, ok := obj.(client.Object); ok {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.set(o.GetUID(), false)
		delete(t.ready, o.GetUID())
	}
}

// set records uid's readiness; t.mu is held.
func (t *readinessTracker) set(uid types.UID, ready bool) {
	if t.ready[uid] != ready {
		if ready {
			t.count++
		} else {
			t.count--
		}
	}
	t.ready[uid] = ready
}

func (t *readinessTracker) readyCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

func (t *readinessTracker) waits() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprint(t.waited)
}

func startObjectCache(b *testing.B, cfg *rest.Config) objectCache {
	b.Helper()
	ctx := context.Background()
	// The cache would otherwise print a stack to say that nobody set its logger.
	ctrllog.SetLogger(logr.Discard())
	// Managed fields would double the memory (and the garbage collection) of the benchmark's
	// process, in which the ceiling's client runs too.
	cc, err := cache.New(cfg, cache.Options{Scheme: testenv.Scheme(), DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		b.Fatal(err)
	}
	tracker := &readinessTracker{ready: map[types.UID]bool{}, waited: map[string]int{}}
	for _, obj := range []client.Object{&tenancyv1.Organization{}, &tenancyv1.Project{}, &tenancyv1.Membership{}, &tenancyv1.APIKey{}} {
		informer, err := cc.GetInformer(ctx, obj)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { tracker.observe(obj, false) },
			UpdateFunc: func(_, obj any) { tracker.observe(obj, true) },
			DeleteFunc: tracker.forget,
		}); err != nil {
			b.Fatal(err)
		}
	}
	go func() { _ = cc.Start(ctx) }()
	if !cc.WaitForCacheSync(ctx) {
		b.Fatal("the benchmark's cache did not sync")
	}
	return objectCache{cache: cc, tracker: tracker}
}

func (o objectCache) each(b *testing.B, visit func(tenancyv1.Object)) {
	b.Helper()
	ctx := context.Background()
	var orgs tenancyv1.OrganizationList
	var projects tenancyv1.ProjectList
	var memberships tenancyv1.MembershipList
	var keys tenancyv1.APIKeyList
	for _, list := range []client.ObjectList{&orgs, &projects, &memberships, &keys} {
		if err := o.cache.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			b.Fatal(err)
		}
	}
	for i := range orgs.Items {
		visit(&orgs.Items[i])
	}
	for i := range projects.Items {
		visit(&projects.Items[i])
	}
	for i := range memberships.Items {
		visit(&memberships.Items[i])
	}
	for i := range keys.Items {
		visit(&keys.Items[i])
	}
}

// waitAllReady waits until total objects are Ready for their current generation, and for the
// input to be applied (inputErr delivers its outcome); a failed input fails the benchmark.
func (o objectCache) waitAllReady(b *testing.B, total int, start time.Time, inputErr <-chan error) {
	b.Helper()
	lastReport := time.Now()
	inputDone := false
	for {
		select {
		case err := <-inputErr:
			if err != nil {
				b.Fatalf("applying the tenants: %v", err)
			}
			inputDone = true
		default:
		}
		ready := o.tracker.readyCount()
		if ready >= total && inputDone {
			return
		}
		if time.Since(start) > scaleReadyTimeout {
			b.Fatalf("%d of %d objects Ready after %s", ready, total, scaleReadyTimeout)
		}
		if time.Since(lastReport) > 30*time.Second {
			// On stderr: a benchmark's log keeps only its first lines, and the results come last.
			fmt.Fprintf(os.Stderr, "%s: %d of %d objects Ready\n", time.Since(start).Round(time.Second), ready, total)
			lastReport = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (o objectCache) resourceVersions(b *testing.B) map[types.UID]string {
	b.Helper()
	versions := map[types.UID]string{}
	o.each(b, func(obj tenancyv1.Object) { versions[obj.GetUID()] = obj.GetResourceVersion() })
	return versions
}

// rewritten counts the objects whose resourceVersion changed since versions (after giving the
// watch a moment to deliver what the API server stored).
func (o objectCache) rewritten(b *testing.B, versions map[types.UID]string) int {
	b.Helper()
	time.Sleep(2 * time.Second)
	changed := 0
	o.each(b, func(obj tenancyv1.Object) {
		if versions[obj.GetUID()] != obj.GetResourceVersion() {
			changed++
		}
	})
	return changed
}

// databaseMark is a transaction id: rows written later have a newer xmin.
type databaseMark struct {
	xid  int64
	rows map[string]int64
}

func tenancyTables(b *testing.B, conn *pgx.Conn) []string {
	b.Helper()
	rows, err := conn.Query(context.Background(), "SELECT tablename FROM pg_tables WHERE schemaname = 'tenancy' ORDER BY 1")
	if err != nil {
		b.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	return tables
}

func databaseMarkNow(b *testing.B, conn *pgx.Conn) databaseMark {
	b.Helper()
	ctx := context.Background()
	m := databaseMark{rows: map[string]int64{}}
	for _, table := range tenancyTables(b, conn) {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM tenancy."+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
			b.Fatal(err)
		}
		m.rows[table] = n
	}
	// The 32-bit xid of a transaction that starts after the counts.
	if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint % 4294967296").Scan(&m.xid); err != nil {
		b.Fatal(err)
	}
	return m
}

// databaseChanges counts, per tenancy table, rows inserted or updated since mark (their xmin is
// newer; the run is far too short for xid wraparound) and rows that went.
func databaseChanges(b *testing.B, conn *pgx.Conn, mark databaseMark) writeCounts {
	b.Helper()
	ctx := context.Background()
	changes := writeCounts{}
	for _, table := range tenancyTables(b, conn) {
		var written, now int64
		err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE xmin::text::bigint > $1), count(*) FROM tenancy."+pgx.Identifier{table}.Sanitize(),
			mark.xid).Scan(&written, &now)
		if err != nil {
			b.Fatal(err)
		}
		if written > 0 {
			changes["written "+table] = float64(written)
		}
		if gone := mark.rows[table] + written - now; gone > 0 {
			changes["deleted "+table] = float64(gone)
		}
	}
	return changes
}

// scaleCeiling measures what the API server accepts from one client: for as many objects of each
// kind as the run made, a create, a finalizer patch and a status patch, from ceilingWorkers
// goroutines, with no webhooks and no manager. It returns objects per second.
func scaleCeiling(b *testing.B, c client.Client, orgs int) float64 {
	b.Helper()
	ctx := context.Background()
	for _, obj := range []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhooks.MutatingConfigurationName}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhooks.ValidatingConfigurationName}},
	} {
		if err := c.Delete(ctx, obj); err != nil {
			b.Fatal(err)
		}
	}
	for n := range scaleCeilingNamespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ceiling-%d", n)}}); err != nil {
			b.Fatal(err)
		}
	}
	var objs []client.Object
	for i := range orgs {
		for _, obj := range tenantObjects(i, orgs) {
			if obj.GetNamespace() == "" {
				obj.SetName("ceiling-" + obj.GetName())
			} else {
				obj.SetName(fmt.Sprintf("%s-%s", obj.GetNamespace(), obj.GetName()))
				obj.SetNamespace(fmt.Sprintf("ceiling-%d", i%scaleCeilingNamespaces))
			}
			objs = append(objs, obj)
		}
	}
	finalizer := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["tenancy.dev/finalizer"]}}`))
	start := time.Now()
	parallel(b, ceilingWorkers, len(objs), func(n int) error {
		obj := objs[n]
		if err := c.Create(ctx, obj); err != nil {
			return err
		}
		if err := c.Patch(ctx, obj, finalizer); err != nil {
			return err
		}
		status := fmt.Sprintf(`{"status":{"observedGeneration":1,"id":"00000000-0000-0000-0000-000000000000","conditions":[{"type":"Ready","status":"True","reason":"Reconciled","message":"Reconciled","lastTransitionTime":%q,"observedGeneration":1}]}}`,
			time.Now().UTC().Format(time.RFC3339))
		err := c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(status)))
		if err != nil {
			return errors.Join(fmt.Errorf("status of %T %s", obj, obj.GetName()), err)
		}
		return nil
	})
	return float64(len(objs)) / time.Since(start).Seconds()
}
