package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/internal/version"
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

	release, err := testenv.ReleaseVersion()
	if err != nil {
		return err
	}
	say("Building the manager and authd %s", release)
	managerBin, authdBin := filepath.Join(state, "bin", "manager"), filepath.Join(state, "bin", "authd")
	if err := runCmd(ctx, root, nil, "go", "build", "-o", filepath.Join(state, "bin")+"/",
		"-ldflags="+version.LinkerFlag(release), "./cmd/manager", "./cmd/authd"); err != nil {
		return err
	}

	// authd serves HTTPS with a certificate of the stack's own CA: kube-apiserver trusts only an
	// https issuer, and the same URL is what people and the tests use.
	devCerts, renewed, err := ensureTLS(state, time.Now())
	if err != nil {
		return fmt.Errorf("making the dev CA and authd's certificate: %w", err)
	}
	if renewed {
		say("Made a new dev CA %s (a browser that trusted an earlier one must be told again)", devCerts.CAFile)
	}
	authdPort, err := portOrFree(8090)
	if err != nil {
		return err
	}
	authdURL := fmt.Sprintf("https://localhost:%d", authdPort)
	authnConfig := filepath.Join(state, "authentication-config.yaml")
	if err := writeAuthenticationConfig(authnConfig, authdURL, devCerts.CAPEM); err != nil {
		return err
	}

	say("Starting kube-apiserver and etcd (trusting authd's ID tokens for %s)", kubectlClientID)
	env, err := testenv.NewControlPlane()
	if err != nil {
		return err
	}
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(state, "etcd")}
	env.ControlPlane.GetAPIServer().Configure().Set("authentication-config", authnConfig)
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
	oidcKubeconfig := filepath.Join(state, "kubeconfig-oidc")
	if err := writeOIDCKubeconfig(oidcKubeconfig, kubeconfigBytes, authdURL, devCerts.CAFile); err != nil {
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
	// The operator's namespace holds the signing keys.
	if err := adminClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); client.IgnoreAlreadyExists(err) != nil {
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
	if err := testenv.InstallAuthdRBAC(ctx, adminClient, operatorNamespace); err != nil {
		return err
	}
	// The manager runs under its service account's name, with only config/rbac's ClusterRole: the
	// policies let only it bind namespaces.
	managerUser, err := testenv.ManagerUser(env)
	if err != nil {
		return err
	}
	managerKubeconfig, err := writeKubeconfig(managerUser, filepath.Join(state, "manager.kubeconfig"))
	if err != nil {
		return err
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	kubeEnv := []string{"KUBECONFIG=" + kubeconfig}

	port, err := freePort()
	if err != nil {
		return err
	}
	say("Starting kube-controller-manager (garbage collector, namespace controller)")
	if err := startProcess(ctx, &s, logs, "kube-controller-manager",
		filepath.Join(env.BinaryAssetsDirectory, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--controllers=garbagecollector,namespace", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port)); err != nil {
		return err
	}

	mailpit, err := startMailpit(ctx, &s, root, state, logs)
	if err != nil {
		return err
	}
	mailFlags := []string{"--smtp-url=" + mailpit.smtpURL, "--mail-from=Tenancy dev <no-reply@localhost>"}
	// Both name the service account a platform admin takes a token of for authd's admin API
	// (docs/quickstart.md, section 10); the webhooks treat it as a platform admin too.
	adminFlags := []string{"--platform-admin-users=" + devPlatformAdmin}

	databaseURL, err := ensureDatabase(ctx, serverURL, o.database)
	if err != nil {
		return err
	}
	say("Starting the manager (logs: %s)", filepath.Join(logs, "manager.log"))
	if err := startProcess(ctx, &s, logs, "manager", managerBin, append([]string{
		"--kubeconfig=" + managerKubeconfig, "--database-url=" + databaseURL,
		"--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0",
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--resync-period=1m", "--public-url=" + authdURL, "--zap-devel"}, append(mailFlags, adminFlags...)...)...); err != nil {
		return err
	}
	authdUser, err := testenv.AuthdUser(env)
	if err != nil {
		return err
	}
	authdKubeconfig, err := writeKubeconfig(authdUser, filepath.Join(state, "authd.kubeconfig"))
	if err != nil {
		return err
	}
	say("Starting authd on %s (logs: %s)", authdURL, filepath.Join(logs, "authd.log"))
	// authd logs in as the superuser here and takes the role tenancy_authd for every session.
	if err := startProcess(ctx, &s, logs, "authd", authdBin, append([]string{
		"--kubeconfig=" + authdKubeconfig, "--database-url=" + databaseURL, fmt.Sprintf("--listen=127.0.0.1:%d", authdPort), "--metrics-listen=127.0.0.1:0",
		"--public-url=" + authdURL, "--issuer=" + authdURL, "--tls-cert-file=" + devCerts.CertFile, "--tls-key-file=" + devCerts.KeyFile,
		"--allow-signup", "--zap-devel"}, append(mailFlags, adminFlags...)...)...); err != nil {
		return err
	}
	say("Waiting for the admission webhooks to answer")
	if err := waitForWebhooks(ctx, adminClient); err != nil {
		return err
	}

	say("Applying the OAuth client kubectl (hack/devstack/kubectl-oauthclient.yaml)")
	if err := runCmd(ctx, root, kubeEnv, kubectl, "apply", "-f", filepath.Join("hack", "devstack", "kubectl-oauthclient.yaml")); err != nil {
		return err
	}

	say("Creating the demo application table public.notes")
	if err := createDemoTable(ctx, databaseURL); err != nil {
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
	if err := runCmd(ctx, root, kubeEnv, kubectl, "wait", "--for=condition=Ready", "--timeout=180s",
		"tenanttables.tenancy.dev", "--all"); err != nil {
		return err
	}
	for _, kind := range []string{"projects.tenancy.dev", "memberships.tenancy.dev", "apikeys.tenancy.dev", "oauthclients.tenancy.dev"} {
		if err := runCmd(ctx, root, kubeEnv, kubectl, "wait", "--for=condition=Ready", "--timeout=180s",
			kind, "--all", "--all-namespaces"); err != nil {
			return err
		}
	}

	say("Waiting for authd, and accepting the sample Owner's invitation")
	authdClient := devCerts.client()
	if err := waitForAuthd(ctx, authdClient, authdURL); err != nil {
		return err
	}
	if err := acceptOwnerInvitation(ctx, authdClient, adminClient, authdURL, mailpit.webURL); err != nil {
		return err
	}

	envFile := filepath.Join(state, "env")
	envLines := fmt.Sprintf("KUBECONFIG=%s\nTENANCY_DATABASE_URL=%s\nTENANCY_AUTHD_URL=%s\nTENANCY_CA_FILE=%s\nTENANCY_MAIL_URL=%s\n",
		kubeconfig, databaseURL, authdURL, devCerts.CAFile, mailpit.webURL)
	if err := os.WriteFile(envFile, []byte(envLines), 0o600); err != nil {
		return err
	}
	_ = runCmd(ctx, root, kubeEnv, kubectl, "get", "tenancy", "--all-namespaces")
	fmt.Printf(`
Tenancy %[9]s is running.
  kubeconfig:  %[1]s
               export KUBECONFIG=%[1]s; %[2]s get tenancy -A
  database:    psql '%[3]s' -c 'select name, tier from tenancy.organizations'
  logs:        %[4]s
  environment: %[5]s (source it from scripts)
  authd:       %[6]s (discovery: %[6]s/.well-known/openid-configuration, API: %[6]s/openapi.json)
  dev CA:      %[12]s signed authd's certificate: curl --cacert it; a browser warns until you
               trust it or click through (docs/quickstart.md, section 1)
  web:         %[6]s/login as %[7]s with the password %[8]s
               (the sample Owner: members, projects, API keys and the audit log of acme)
  mail:        %[11]s (Mailpit: every mail authd and the manager send, e.g. invitations and
               password resets; API: %[11]s/api/v1/messages)
  log in:      curl -s --cacert '%[12]s' %[6]s/auth/login -H 'Content-Type: application/json' \
                 -d '{"email":"%[7]s","password":"%[8]s"}'
               (the sample Owner; the script accepted the invitation with this password)
  API key:     curl -s --cacert '%[12]s' %[6]s/oauth2/token -d grant_type=client_credentials \
                 -u "$(%[2]s -n acme get secret ci-apikey -o jsonpath='{.data.keyID}' | base64 -d):$(%[2]s -n acme get secret ci-apikey -o jsonpath='{.data.apiKey}' | base64 -d)"
  as yourself: go install ./cmd/kubectl-tenancy
               %[2]s --kubeconfig %[13]s get projects -n acme
               (signs in to authd in the browser, e.g. as %[7]s; kube-apiserver trusts authd's ID
               tokens for the OAuth client %[14]s: docs/quickstart.md, section 11)
  OAuth apps:  %[2]s get oauthclients -A (kubectl.tenancy-system for kubectl, and acme's demo-app,
               its secret in the Secret acme/demo-app-oauth-client: go run ./examples/signin signs people in
               with it at http://127.0.0.1:5556, docs/quickstart.md, section 12)
  webhooks:    %[2]s --as=admin@acme.example -n acme patch membership owner --type=merge -p '{"spec":{"role":"Admin"}}'
               (refused: the sample Admin may edit memberships, but not demote an Owner)
  accounts:    %[2]s get accountsuspensions (a platform admin disables an account: docs/quickstart.md, section 10)
  admin API:   %[2]s -n tenancy-system create serviceaccount tenancy-admin   (named in --platform-admin-users here)
               curl -s --cacert '%[12]s' %[6]s/api/v1/admin/suspensions -H "Authorization: Bearer $(%[2]s -n tenancy-system create token tenancy-admin)"
  version:     %[10]s --version (and the metric tenancy_build_info)
  install:     make release writes dist/install.yaml and the Helm chart for a real cluster (docs/deployment.md)
`, kubeconfig, kubectl, databaseURL, logs, envFile, authdURL, sampleOwner, samplePassword, release, managerBin, mailpit.webURL,
		devCerts.CAFile, oidcKubeconfig, kubectlClientID)

	if o.once {
		return nil
	}
	fmt.Println("Press Ctrl-C to stop everything.")
	<-ctx.Done()
	fmt.Println()
	return nil
}

const (
	operatorNamespace = "tenancy-system"
	// devPlatformAdmin is the platform admin of the admin API in the dev stack: a service account
	// that the quickstart creates and takes a token of.
	devPlatformAdmin = "system:serviceaccount:" + operatorNamespace + ":tenancy-admin"
	// sampleOwner is the Owner of config/samples; make dev accepts their invitation with
	// samplePassword, so that the printed login works.
	sampleOwner    = "owner@acme.example"
	samplePassword = "tenancy-dev-password"
)

// createDemoTable makes the application table of the sample TenantTable, once the manager's
// migrations have made the role tenancy_app that applications use.
func createDemoTable(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var ready bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenancy_app')").Scan(&ready); err != nil {
			return err
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the manager did not migrate the database within 2 minutes; see its log")
		}
		time.Sleep(500 * time.Millisecond)
	}
	_, err = conn.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS public.notes (id bigserial PRIMARY KEY, org_id uuid NOT NULL, body text NOT NULL);
		CREATE INDEX IF NOT EXISTS notes_org_id_idx ON public.notes (org_id);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO tenancy_app;
		GRANT USAGE ON SEQUENCE public.notes_id_seq TO tenancy_app`)
	return err
}

// waitForAuthd waits until authd is ready (database reachable, signing keys loaded).
func waitForAuthd(ctx context.Context, c *http.Client, authdURL string) error {
	var last string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		resp, err := c.Get(authdURL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = strings.TrimSpace(string(body))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("authd was not ready within 2 minutes (%s); see its log", last)
}

// acceptOwnerInvitation accepts the sample Owner's invitation with samplePassword, unless an
// earlier run did. The invitation was mailed: its link is read from Mailpit, as the Owner would
// read it in their mailbox.
func acceptOwnerInvitation(ctx context.Context, hc *http.Client, c client.Client, authdURL, mailURL string) error {
	secret := &corev1.Secret{}
	err := c.Get(ctx, client.ObjectKey{Namespace: "acme", Name: "owner-invite"}, secret)
	if apierrors.IsNotFound(err) {
		return nil // accepted by an earlier run
	}
	if err != nil {
		return err
	}
	token, err := mailedInvitationToken(ctx, mailURL, sampleOwner, authdURL+"/invite?token=", string(secret.Data[tenancyv1.InvitationTokenHashKey]))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"token": token, "password": samplePassword})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, authdURL+"/auth/invitations/accept", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		answer, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("accepting the sample Owner's invitation: %s: %s", resp.Status, answer)
	}
	return nil
}

// writeKubeconfig writes user's kubeconfig to path.
func writeKubeconfig(user *envtest.AuthenticatedUser, path string) (string, error) {
	data, err := user.KubeConfig()
	if err == nil {
		err = os.WriteFile(path, data, 0o600)
	}
	return path, err
}

// portOrFree returns port when it is free on loopback, or another free port.
func portOrFree(port int) (int, error) {
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		_ = l.Close()
		return port, nil
	}
	return freePort()
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
func startProcess(ctx context.Context, s *stack, logs, name string, bin string, args ...string) error {
	logFile, err := os.Create(filepath.Join(logs, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
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
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
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
