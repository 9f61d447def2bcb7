// Command devstack runs Tenancy on one machine with no cluster: the kube-apiserver and etcd that
// the tests use, kube-controller-manager (garbage collection and namespace deletion), a local
// PostgreSQL, the CRDs, the admission policies and webhooks, the manager, and config/samples. It
// is what `make dev` runs.
//
// State lives in .dev/ (etcd data, kubeconfig, logs, binaries) and is reused by the next run;
// --clean starts afresh. --once stops everything once the samples are Ready (for smoke tests).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

type options struct {
	state    string
	database string
	clean    bool
	once     bool
}

func main() {
	var o options
	flag.StringVar(&o.state, "state", ".dev", "Directory for the stack's state, reused across runs (relative to the repository).")
	flag.StringVar(&o.database, "database", "tenancy_dev", "Name of the database the stack uses on the local PostgreSQL.")
	flag.BoolVar(&o.clean, "clean", false, "Forget the previous run's cluster state and database, and start afresh.")
	flag.BoolVar(&o.once, "once", false, "Stop everything as soon as the samples are Ready.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

// stack is what run started, stopped in reverse order.
type stack struct {
	stops []func()
}

func (s *stack) onStop(f func()) { s.stops = append(s.stops, f) }

func (s *stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

func run(ctx context.Context, o options) error {
	root := testenv.RepoRoot()
	state := o.state
	if !filepath.IsAbs(state) {
		state = filepath.Join(root, state)
	}
	serverURL, err := testenv.ServerURL()
	if err != nil {
		return err
	}
	if o.clean {
		say("Starting clean: removing %s and database %s", state, o.database)
		if err := os.RemoveAll(state); err != nil {
			return err
		}
		if err := dropDatabase(ctx, serverURL, o.database); err != nil {
			return err
		}
	}
	logs := filepath.Join(state, "logs")
	for _, dir := range []string{logs, filepath.Join(state, "bin"), filepath.Join(state, "etcd")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	_ = os.Remove(filepath.Join(state, "env")) // written again once everything is Ready

	var s stack
	defer s.stop()

	say("Building the manager")
	managerBin := filepath.Join(state, "bin", "manager")
	if err := runCmd(ctx, root, nil, "go", "build", "-o", managerBin, "./cmd/manager"); err != nil {
		return err
	}

	say("Starting kube-apiserver and etcd")
	env, err := testenv.NewControlPlane()
	if err != nil {
		return err
	}
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(state, "etcd")}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	s.onStop(func() {
		say("Stopping kube-apiserver and etcd")
		_ = env.Stop()
	})
	admin, err := env.AddUser(envtest.User{Name: "dev-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating the admin user: %w", err)
	}
	kubeconfigBytes, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(state, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		return err
	}
	adminClient, err := client.New(admin.Config(), client.Options{})
	if err != nil {
		return err
	}
	webhookPort, err := freePort()
	if err != nil {
		return err
	}
	say("Installing the admission policies, the webhook configurations and the manager's ClusterRole")
	if err := testenv.InstallPolicies(ctx, adminClient); err != nil {
		return err
	}
	// The manager serves the webhooks on loopback with a certificate it makes itself, and puts its
	// CA into these configurations.
	if err := testenv.InstallWebhookConfigurations(ctx, adminClient, fmt.Sprintf("https://127.0.0.1:%d", webhookPort)); err != nil {
		return err
	}
	if err := testenv.InstallManagerRBAC(ctx, adminClient); err != nil {
		return err
	}
	// The manager runs under its service account's name, with only config/rbac's ClusterRole: the
	// policies let only it bind namespaces.
	managerUser, err := testenv.ManagerUser(env)
	if err != nil {
		return err
	}
	managerKubeconfigBytes, err := managerUser.KubeConfig()
	if err != nil {
		return err
	}
	managerKubeconfig := filepath.Join(state, "manager.kubeconfig")
	if err := os.WriteFile(managerKubeconfig, managerKubeconfigBytes, 0o600); err != nil {
		return err
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	kubeEnv := []string{"KUBECONFIG=" + kubeconfig}

	port, err := freePort()
	if err != nil {
		return err
	}
	say("Starting kube-controller-manager (garbage collector, namespace controller)")
	if err := startProcess(ctx, &s, logs, "kube-controller-manager", nil,
		filepath.Join(env.BinaryAssetsDirectory, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--controllers=garbagecollector,namespace", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port)); err != nil {
		return err
	}

	databaseURL, err := ensureDatabase(ctx, serverURL, o.database)
	if err != nil {
		return err
	}
	say("Starting the manager (logs: %s)", filepath.Join(logs, "manager.log"))
	if err := startProcess(ctx, &s, logs, "manager", nil, managerBin,
		"--kubeconfig="+managerKubeconfig, "--database-url="+databaseURL,
		"--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0",
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-cert-dir="+filepath.Join(state, "webhook-certs"),
		"--resync-period=1m", "--public-url=http://localhost:8090", "--zap-devel"); err != nil {
		return err
	}
	say("Waiting for the admission webhooks to answer")
	if err := waitForWebhooks(ctx, adminClient); err != nil {
		return err
	}

	say("Applying config/samples")
	if err := runCmd(ctx, root, kubeEnv, kubectl, "apply", "-k", "config/samples"); err != nil {
		return err
	}
	say("Waiting for the samples to be Ready")
	if err := runCmd(ctx, root, kubeEnv, kubectl, "wait", "--for=condition=Ready", "--timeout=180s",
		"organizations.tenancy.dev", "--all"); err != nil {
		return err
	}
	for _, kind := range []string{"projects.tenancy.dev", "memberships.tenancy.dev", "apikeys.tenancy.dev"} {
		if err := runCmd(ctx, root, kubeEnv, kubectl, "wait", "--for=condition=Ready", "--timeout=180s",
			kind, "--all", "--all-namespaces"); err != nil {
			return err
		}
	}

	envFile := filepath.Join(state, "env")
	envLines := fmt.Sprintf("KUBECONFIG=%s\nTENANCY_DATABASE_URL=%s\n", kubeconfig, databaseURL)
	if err := os.WriteFile(envFile, []byte(envLines), 0o600); err != nil {
		return err
	}
	_ = runCmd(ctx, root, kubeEnv, kubectl, "get", "tenancy", "--all-namespaces")
	fmt.Printf(`
Tenancy is running.
  kubeconfig:  %[1]s
               export KUBECONFIG=%[1]s; %[2]s get tenancy -A
  database:    psql '%[3]s' -c 'select name, tier from tenancy.organizations'
  logs:        %[4]s
  environment: %[5]s (source it from scripts)
  invitation:  %[2]s -n acme get secret owner-invite -o jsonpath='{.data.url}' | base64 -d
               (the sample Owner's link; accepting it needs authd, which is not built yet)
  API key:     %[2]s -n acme get secret ci-apikey -o jsonpath='{.data.apiKey}' | base64 -d
  webhooks:    %[2]s --as=admin@acme.example -n acme patch membership owner --type=merge -p '{"spec":{"role":"Admin"}}'
               (refused: the sample Admin may edit memberships, but not demote an Owner)
`, kubeconfig, kubectl, databaseURL, logs, envFile)

	if o.once {
		return nil
	}
	fmt.Println("Press Ctrl-C to stop everything.")
	<-ctx.Done()
	fmt.Println()
	return nil
}

// waitForWebhooks waits until the API server reaches the manager's webhooks with the CA the
// manager injected: a dry-run create goes through both webhooks and stores nothing.
func waitForWebhooks(ctx context.Context, c client.Client) error {
	probe := &unstructured.Unstructured{}
	probe.SetAPIVersion("tenancy.dev/v1alpha1")
	probe.SetKind("Organization")
	probe.SetName("webhook-probe")
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if err = c.Create(ctx, probe.DeepCopy(), client.DryRunAll); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("the webhooks did not answer within 2 minutes (see the manager's log): %w", err)
}

// startProcess runs a long-lived process with its output in logs/<name>.log, stopped with the stack.
func startProcess(ctx context.Context, s *stack, logs, name string, env []string, bin string, args ...string) error {
	logFile, err := os.Create(filepath.Join(logs, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	s.onStop(func() {
		say("Stopping %s", name)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logFile.Close()
	})
	// A process that dies at once (bad flag, port taken) is reported now, not as a hang later.
	select {
	case <-done:
		return fmt.Errorf("%s exited at start (%v); see %s", name, waitErr, logFile.Name())
	case <-time.After(time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

// ensureDatabase creates the database unless a previous run did, and returns its URL.
func ensureDatabase(ctx context.Context, serverURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("creating database %s: %w", name, err)
		}
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(ctx context.Context, serverURL, name string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}
