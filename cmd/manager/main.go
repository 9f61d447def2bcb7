package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/operator"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tenant"
	"github.com/tenancy-dev/tenancy/internal/version"
	"github.com/tenancy-dev/tenancy/internal/webhookcert"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// config is everything the manager takes from its flags and environment.
type config struct {
	databaseURL             string
	kubeconfig              string
	metricsAddr             string
	probeAddr               string
	pprofAddr               string
	leaderElect             bool
	namespace               string
	resyncPeriod            time.Duration
	publicURL               string
	invitationTTL           time.Duration
	apiKeyRotationGrace     time.Duration
	usernamePrefix          string
	maxConcurrentReconciles int
	kubeAPIQPS              float64
	kubeAPIBurst            int
	enableWebhooks          bool
	webhookHost             string
	webhookPort             int
	webhookCertDir          string
	webhookSelfSigned       bool
	platformAdminGroups     []string
	platformAdminUsers      []string
	signingKeyAlgorithm     string
	signingKeyRotation      time.Duration
	smtp                    *mail.SMTPConfig
	zap                     zap.Options
}

func parseFlags(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	fs.StringVar(&c.databaseURL, "database-url", getenv("TENANCY_DATABASE_URL"),
		"PostgreSQL URL (libpq form) of the tenancy database; defaults to $TENANCY_DATABASE_URL.")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "",
		"Path to a kubeconfig; defaults to $KUBECONFIG, the in-cluster config, then ~/.kube/config.")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 turns it off.")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	fs.StringVar(&c.pprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof profiles, for profiling a running manager; 0 turns it off.")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	fs.StringVar(&c.namespace, "namespace", "tenancy-system", "The operator's own namespace (leader election lease).")
	fs.DurationVar(&c.resyncPeriod, "resync-period", 10*time.Minute,
		"How often every object is reconciled again, restoring rows changed by hand.")
	fs.StringVar(&c.publicURL, "public-url", "http://localhost:8090",
		"authd's public URL; invitation links point to its /invite page.")
	fs.DurationVar(&c.invitationTTL, "invitation-ttl", 7*24*time.Hour, "How long an invitation token is valid.")
	fs.DurationVar(&c.apiKeyRotationGrace, "apikey-rotation-grace", 24*time.Hour,
		"How long an API key, or an OAuth client secret, replaced by a rotation keeps working.")
	fs.StringVar(&c.usernamePrefix, "username-prefix", "",
		"Prefix that turns a member's email into their Kubernetes username; set it to the API server's --oidc-username-prefix.")
	// Defaults chosen with BenchmarkScale (docs/benchmarks.md, "Why the code is shaped this way"):
	// with fewer workers or a lower rate limit, the manager holds itself back when many tenants
	// arrive at once.
	fs.IntVar(&c.maxConcurrentReconciles, "max-concurrent-reconciles", 16, "Workers per controller.")
	fs.Float64Var(&c.kubeAPIQPS, "kube-api-qps", 1000, "Client-side rate limit towards the Kubernetes API (queries per second); the API server's priority and fairness is the real guard.")
	fs.IntVar(&c.kubeAPIBurst, "kube-api-burst", 2000, "Burst above --kube-api-qps.")
	fs.BoolVar(&c.enableWebhooks, "enable-webhooks", true, "Serve the admission webhooks; false runs the controllers alone.")
	fs.StringVar(&c.webhookHost, "webhook-host", "", "Address the webhook server listens on; empty means every interface.")
	fs.IntVar(&c.webhookPort, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&c.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"Directory with the webhook server's tls.crt and tls.key (from cert-manager in a cluster).")
	fs.BoolVar(&c.webhookSelfSigned, "webhook-self-signed", false,
		"Make a private CA and serving certificate, keep them in the Secret webhook-server-cert in --namespace (shared by every replica), serve it and put the CA into the webhook configurations; for clusters without cert-manager and for local runs. --webhook-cert-dir is then unused.")
	platformAdminGroups := fs.String("platform-admin-groups", "system:masters",
		"Comma-separated Kubernetes groups whose members may make any change the schema allows.")
	platformAdminUsers := fs.String("platform-admin-users", "",
		"Comma-separated Kubernetes usernames that may make any change the schema allows (the operator's service accounts always may).")
	fs.StringVar(&c.signingKeyAlgorithm, "signing-key-algorithm", signing.ES256,
		"Algorithm of new signing keys: ES256 or EdDSA. kube-apiserver (and some OpenID Connect libraries) accept no EdDSA ID tokens.")
	fs.DurationVar(&c.signingKeyRotation, "signing-key-rotation", 30*24*time.Hour,
		"Age at which the signing key gets a successor (published 10 minutes before it signs).")
	smtpURL := fs.String("smtp-url", getenv("TENANCY_SMTP_URL"),
		"Mail server for invitations: smtp://[user:pass@]host[:587][?starttls=required|opportunistic|none] or smtps://[user:pass@]host[:465]; "+
			"defaults to $TENANCY_SMTP_URL. With it, invitations are mailed unless a Membership asks for delivery Link.")
	mailFrom := fs.String("mail-from", "", `Sender of the manager's mail, e.g. "Acme <no-reply@acme.example>"; defaults to Tenancy <no-reply@the --public-url host>.`)
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if *printVersion {
		return config{}, version.ErrRequested
	}
	if *smtpURL != "" {
		smtp, err := mail.ParseSMTPURL(*smtpURL, mail.DefaultFrom(*mailFrom, c.publicURL))
		if err != nil {
			return config{}, err
		}
		c.smtp = &smtp
	}
	c.platformAdminGroups = tenant.SplitList(*platformAdminGroups)
	c.platformAdminUsers = tenant.SplitList(*platformAdminUsers)
	switch {
	case c.databaseURL == "":
		return config{}, errors.New("--database-url: required (or set TENANCY_DATABASE_URL)")
	case c.resyncPeriod < time.Second:
		return config{}, fmt.Errorf("--resync-period: %s is too short; use at least 1s", c.resyncPeriod)
	case c.invitationTTL < time.Minute:
		return config{}, fmt.Errorf("--invitation-ttl: %s is too short; use at least 1m", c.invitationTTL)
	case c.apiKeyRotationGrace < 0:
		return config{}, fmt.Errorf("--apikey-rotation-grace: must not be negative, got %s", c.apiKeyRotationGrace)
	case !validPublicURL(c.publicURL):
		return config{}, fmt.Errorf("--public-url: %q is not an absolute http(s) URL", c.publicURL)
	case c.maxConcurrentReconciles < 1:
		return config{}, fmt.Errorf("--max-concurrent-reconciles: must be at least 1, got %d", c.maxConcurrentReconciles)
	case c.kubeAPIQPS <= 0 || c.kubeAPIBurst < 1:
		return config{}, errors.New("--kube-api-qps and --kube-api-burst: must be positive")
	case c.signingKeyAlgorithm != signing.EdDSA && c.signingKeyAlgorithm != signing.ES256:
		return config{}, fmt.Errorf("--signing-key-algorithm: %q is not EdDSA or ES256", c.signingKeyAlgorithm)
	case c.signingKeyRotation < time.Hour:
		return config{}, fmt.Errorf("--signing-key-rotation: %s is too short; use at least 1h", c.signingKeyRotation)
	case c.webhookPort < 1 || c.webhookPort > 65535:
		return config{}, fmt.Errorf("--webhook-port: %d is not a TCP port", c.webhookPort)
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if errors.Is(err, version.ErrRequested) {
		fmt.Println("manager", version.Get())
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.zap)))
	if err := run(ctrl.SetupSignalHandler(), cfg, ctrl.Log.WithName("manager")); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log logr.Logger) error {
	ctrlmetrics.Registry.MustRegister(version.Collector("manager"))
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))

	restConfig, err := loadRESTConfig(cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	restConfig.QPS = float32(cfg.kubeAPIQPS)
	restConfig.Burst = cfg.kubeAPIBurst

	database, err := db.Connect(ctx, cfg.databaseURL, log.WithName("db"))
	if err != nil {
		return err
	}
	defer database.Close()

	webhookOptions := webhook.Options{Host: cfg.webhookHost, Port: cfg.webhookPort, CertDir: cfg.webhookCertDir}
	var selfSigned *webhookcert.Source
	if cfg.enableWebhooks && cfg.webhookSelfSigned {
		if selfSigned, err = selfSignedWebhooks(ctx, restConfig, scheme, cfg); err != nil {
			return err
		}
		webhookOptions.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = selfSigned.GetCertificate }}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		WebhookServer:           webhook.NewServer(webhookOptions),
		Cache:                   controllers.CacheOptions(),
		Metrics:                 metricsserver.Options{BindAddress: cfg.metricsAddr},
		HealthProbeBindAddress:  cfg.probeAddr,
		PprofBindAddress:        cfg.pprofAddr,
		LeaderElection:          cfg.leaderElect,
		LeaderElectionID:        "manager.tenancy.dev",
		LeaderElectionNamespace: cfg.namespace,
		// Lets a new leader start at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// With webhooks, ready means they answer (they decide from the cache, and stay up while the
	// database is down); without, that the schema is migrated.
	if !cfg.enableWebhooks {
		if err := mgr.AddReadyzCheck("database-schema", database.MigratedCheck); err != nil {
			return err
		}
	}
	if err := operator.Setup(ctx, mgr, database, operatorParts(cfg)); err != nil {
		return err
	}
	if cfg.enableWebhooks {
		if selfSigned != nil {
			if err := mgr.Add(selfSigned); err != nil {
				return err
			}
		}
		if err := mgr.AddReadyzCheck("webhooks", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	log.Info("Starting manager", "version", version.Get().Version, "leaderElection", cfg.leaderElect, "resyncPeriod", cfg.resyncPeriod.String(),
		"webhooks", cfg.enableWebhooks, "mail", mail.Describe(cfg.smtp))
	return mgr.Start(ctx)
}

// operatorParts turns the flags into the parts the manager runs: always the controllers and the
// signing-key rotation, the webhooks unless --enable-webhooks=false.
func operatorParts(cfg config) operator.Parts {
	parts := operator.Parts{
		Controllers: &controllers.Settings{
			ResyncPeriod:        cfg.resyncPeriod,
			PublicURL:           cfg.publicURL,
			InvitationTTL:       cfg.invitationTTL,
			APIKeyRotationGrace: cfg.apiKeyRotationGrace,
			UsernamePrefix:      cfg.usernamePrefix,
			OperatorNamespace:   cfg.namespace,
			Options: controller.Options{
				MaxConcurrentReconciles: cfg.maxConcurrentReconciles,
			},
		},
		SMTP: cfg.smtp,
		SigningKeys: &operator.SigningKeys{
			Namespace: cfg.namespace,
			Policy:    signing.Policy{Algorithm: cfg.signingKeyAlgorithm, RotateEvery: cfg.signingKeyRotation, PublishAhead: signingKeyLead},
		},
	}
	if cfg.enableWebhooks {
		parts.Webhooks = &webhooks.Settings{
			PlatformAdminGroups: cfg.platformAdminGroups,
			PlatformAdminUsers:  cfg.platformAdminUsers,
			UsernamePrefix:      cfg.usernamePrefix,
			OperatorNamespace:   cfg.namespace,
		}
	}
	return parts
}

// signingKeyLead is how long a new signing key is published before it signs: longer than authd
// and the SDK cache the key set.
const signingKeyLead = 10 * time.Minute

// webhookCertSecret is the Secret, in the operator's namespace, that holds the webhook
// certificate: cert-manager writes it in clusters that have cert-manager, the manager itself
// with --webhook-self-signed.
const webhookCertSecret = "webhook-server-cert"

// selfSignedWebhooks makes (or loads) the webhook certificate that --webhook-self-signed serves
// and keeps it, with its CA in the webhook configurations, current while the manager runs.
func selfSignedWebhooks(ctx context.Context, restConfig *rest.Config, scheme *runtime.Scheme, cfg config) (*webhookcert.Source, error) {
	hosts := []string{"localhost", "127.0.0.1",
		"tenancy-webhook-service." + cfg.namespace + ".svc", "tenancy-webhook-service." + cfg.namespace + ".svc.cluster.local"}
	if cfg.webhookHost != "" && !slices.Contains(hosts, cfg.webhookHost) {
		hosts = append(hosts, cfg.webhookHost)
	}
	uncached, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	source := &webhookcert.Source{
		Client: uncached, Secret: client.ObjectKey{Namespace: cfg.namespace, Name: webhookCertSecret},
		Hosts: hosts, Interval: time.Minute,
		Injector: &webhookcert.Injector{
			Client: uncached, MutatingName: webhooks.MutatingConfigurationName, ValidatingName: webhooks.ValidatingConfigurationName,
		},
	}
	// Before the webhook server starts, so that it never answers without a certificate.
	if _, err := source.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("--webhook-self-signed: %w", err)
	}
	return source, nil
}

func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

func validPublicURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
