package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tenant"
	"github.com/tenancy-dev/tenancy/internal/version"
)

type config struct {
	listen       string
	metrics      string
	publicURL    string
	databaseURL  string
	databaseRole string
	kubeconfig   string
	// tlsCertFile and tlsKeyFile make authd serve HTTPS itself; without them it serves plain
	// HTTP, for an ingress or load balancer that ends TLS in front of it.
	tlsCertFile string
	tlsKeyFile  string
	server      authd.Config
	zap         zap.Options
}

func parseFlags(args []string, getenv func(string) string) (config, error) {
	c := config{server: authd.Config{Passwords: authd.OWASPParams, Throttle: authd.DefaultThrottle}}
	var issuer string
	fs := flag.NewFlagSet("authd", flag.ContinueOnError)
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	fs.StringVar(&c.listen, "listen", ":8090", "Address to serve the API, the web pages and the probes on.")
	fs.StringVar(&c.metrics, "metrics-listen", ":9090", "Address to serve /metrics on, apart from the public port; 0 turns it off.")
	fs.StringVar(&c.publicURL, "public-url", "http://localhost:8090", "authd's public URL.")
	fs.StringVar(&c.tlsCertFile, "tls-cert-file", "",
		"PEM certificate (chain) to serve --listen with HTTPS; needs --tls-key-file. Without both, authd serves plain HTTP (TLS ended in front of it).")
	fs.StringVar(&c.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file.")
	fs.StringVar(&issuer, "issuer", "", "The iss of tokens; defaults to --public-url.")
	fs.StringVar(&c.server.Audience, "audience", "tenancy", "The aud of access tokens.")
	fs.BoolVar(&c.server.AllowSignup, "allow-signup", false, "Open POST /auth/signup to new emails.")
	fs.DurationVar(&c.server.AccessTokenTTL, "access-token-ttl", 15*time.Minute, "Lifetime of access tokens (at most 24h).")
	fs.DurationVar(&c.server.RefreshTokenTTL, "refresh-token-ttl", 7*24*time.Hour, "How long a refresh token may wait for its use.")
	fs.DurationVar(&c.server.SessionLifetime, "session-lifetime", 30*24*time.Hour, "Absolute lifetime of a session, however often it is refreshed.")
	fs.DurationVar(&c.server.RefreshReuseInterval, "refresh-reuse-interval", 10*time.Second,
		"A rotated refresh token may be used again this shortly after (concurrent refreshes); later reuse revokes its session.")
	fs.DurationVar(&c.server.SignupTimeout, "signup-timeout", 30*time.Second, "How long signup waits for a new organization to be Ready.")
	fs.StringVar(&c.databaseURL, "database-url", getenv("TENANCY_DATABASE_URL"), "PostgreSQL URL; defaults to $TENANCY_DATABASE_URL.")
	fs.StringVar(&c.databaseRole, "database-role", "tenancy_authd", "Role every database session takes (SET ROLE): authd's grants, whatever the login.")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; defaults to $KUBECONFIG, the in-cluster config, then ~/.kube/config.")
	fs.StringVar(&c.server.OperatorNamespace, "namespace", "tenancy-system", "The operator's namespace, where the signing keys live.")
	fs.StringVar(&c.server.UsernamePrefix, "username-prefix", "",
		"Turns a user's email into their Kubernetes username for the self-service API; set it as the manager's --username-prefix.")
	t := &c.server.Throttle
	fs.IntVar(&t.AddressBurst, "login-address-burst", t.AddressBurst,
		"Password attempts one client address may make at once, for any accounts; then one per --login-address-interval.")
	fs.DurationVar(&t.AddressInterval, "login-address-interval", t.AddressInterval, "How fast a client address regains a password attempt.")
	fs.IntVar(&t.AccountFreeFailures, "login-account-free-failures", t.AccountFreeFailures,
		"Failed password attempts on one account before each further failure makes the next attempt wait.")
	fs.DurationVar(&t.AccountDelay, "login-account-delay", t.AccountDelay,
		"The first wait after the free failures; it doubles with each further failure.")
	fs.DurationVar(&t.AccountMaxDelay, "login-account-max-delay", t.AccountMaxDelay, "The longest wait an account's failures impose.")
	fs.DurationVar(&t.FamiliarFor, "login-familiar-for", t.FamiliarFor,
		"An address the account signed in from within this period is not slowed down by failures from other addresses.")
	var trustedProxies string
	fs.StringVar(&trustedProxies, "trusted-proxies", "",
		"Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client address; without it the TCP peer is the client.")
	var platformAdmins, platformAdminGroups string
	fs.StringVar(&platformAdmins, "platform-admin-users", "",
		"Comma-separated Kubernetes usernames that may use the admin API and that the self-service API never acts as; set it as the manager's --platform-admin-users.")
	fs.StringVar(&platformAdminGroups, "platform-admin-groups", "system:masters",
		"Comma-separated Kubernetes groups whose members may use the admin API; set it as the manager's --platform-admin-groups.")
	var smtpURL, mailFrom string
	fs.StringVar(&smtpURL, "smtp-url", getenv("TENANCY_SMTP_URL"),
		"Mail server for verification and reset links and notices: smtp://[user:pass@]host[:587][?starttls=required|opportunistic|none] "+
			"or smtps://[user:pass@]host[:465]; defaults to $TENANCY_SMTP_URL. Without it authd sends no mail.")
	fs.StringVar(&mailFrom, "mail-from", "", `Sender of authd's mail, e.g. "Acme <no-reply@acme.example>"; defaults to Tenancy <no-reply@the --public-url host>.`)
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if *printVersion {
		return config{}, version.ErrRequested
	}
	c.server.PublicURL = strings.TrimSuffix(c.publicURL, "/")
	c.server.PlatformAdminUsers = tenant.SplitList(platformAdmins)
	c.server.PlatformAdminGroups = tenant.SplitList(platformAdminGroups)
	for _, cidr := range tenant.SplitList(trustedProxies) {
		prefix, err := netip.ParsePrefix(cidr)
		if err != nil {
			return config{}, fmt.Errorf("--trusted-proxies: %q is not a CIDR such as 10.0.0.0/8", cidr)
		}
		t.TrustedProxies = append(t.TrustedProxies, prefix.Masked())
	}
	if smtpURL != "" {
		smtp, err := mail.ParseSMTPURL(smtpURL, mail.DefaultFrom(mailFrom, c.publicURL))
		if err != nil {
			return config{}, err
		}
		c.server.SMTP = &smtp
	}
	c.server.Issuer = strings.TrimSuffix(issuer, "/")
	if c.server.Issuer == "" {
		c.server.Issuer = strings.TrimSuffix(c.publicURL, "/")
	}
	u, err := url.Parse(c.publicURL)
	switch {
	case c.databaseURL == "":
		return config{}, errors.New("--database-url: required (or set TENANCY_DATABASE_URL)")
	case c.tlsCertFile != "" && c.tlsKeyFile == "":
		return config{}, errors.New("--tls-key-file: required with --tls-cert-file")
	case c.tlsKeyFile != "" && c.tlsCertFile == "":
		return config{}, errors.New("--tls-cert-file: required with --tls-key-file")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return config{}, fmt.Errorf("--public-url: %q is not an absolute http(s) URL", c.publicURL)
	case c.server.AccessTokenTTL < time.Minute || c.server.AccessTokenTTL > signing.MaxTokenLifetime:
		return config{}, fmt.Errorf("--access-token-ttl: %s must be between 1m and %s", c.server.AccessTokenTTL, signing.MaxTokenLifetime)
	case c.server.RefreshTokenTTL < time.Minute || c.server.SessionLifetime < c.server.RefreshTokenTTL:
		return config{}, errors.New("--refresh-token-ttl must be at least 1m and --session-lifetime at least --refresh-token-ttl")
	case c.server.RefreshReuseInterval < 0 || c.server.RefreshReuseInterval > time.Minute:
		return config{}, fmt.Errorf("--refresh-reuse-interval: %s must be between 0 and 1m", c.server.RefreshReuseInterval)
	case t.AddressBurst < 1 || t.AddressInterval <= 0:
		return config{}, errors.New("--login-address-burst must be at least 1 and --login-address-interval positive")
	case t.AccountFreeFailures < 1 || t.AccountDelay <= 0 || t.AccountMaxDelay < t.AccountDelay:
		return config{}, errors.New("--login-account-free-failures must be at least 1, --login-account-delay positive and " +
			"--login-account-max-delay at least --login-account-delay")
	case t.FamiliarFor < 0:
		return config{}, errors.New("--login-familiar-for must not be negative")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if errors.Is(err, version.ErrRequested) {
		fmt.Println("authd", version.Get())
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "authd:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.zap)))
	log := ctrl.Log.WithName("authd")
	if err := run(ctrl.SetupSignalHandler(), cfg, log); err != nil {
		log.Error(err, "authd stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log logr.Logger) error {
	var restConfig *rest.Config
	var err error
	if cfg.kubeconfig != "" {
		restConfig, err = clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	} else {
		restConfig, err = ctrl.GetConfig()
	}
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))
	kube, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	asCaller, err := authd.NewCallerClient(restConfig, scheme, kube.RESTMapper())
	if err != nil {
		return err
	}
	store, err := authd.OpenStore(ctx, cfg.databaseURL, cfg.databaseRole)
	if err != nil {
		return err
	}
	defer store.Close()
	keys := &authd.KeySource{Reader: kube, Namespace: cfg.server.OperatorNamespace, Interval: 2 * time.Second}
	server, err := authd.NewServer(cfg.server, store, keys, authd.Kubernetes{Client: kube, AsCaller: asCaller}, log)
	if err != nil {
		return err
	}
	httpServer := authd.NewHTTPServer(cfg.listen, server.Handler())
	if httpServer.TLSConfig, err = tlsConfig(cfg.tlsCertFile, cfg.tlsKeyFile); err != nil {
		return err
	}
	servers := []*http.Server{httpServer}
	if cfg.metrics != "0" {
		servers = append(servers, authd.NewHTTPServer(cfg.metrics, server.MetricsHandler()))
	}
	// Background work outlives the HTTP server, so that the audit rows of the last requests are
	// written before the store closes.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan struct{})
	go func() { server.Run(runCtx); close(runDone) }()
	defer func() { stopRun(); <-runDone }()
	drained := make(chan struct{})
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(shutdown)
		}
		close(drained)
	}()
	log.Info("Serving", "version", version.Get().Version, "listen", cfg.listen, "tls", httpServer.TLSConfig != nil, "metrics", cfg.metrics, "issuer", cfg.server.Issuer, "signup", cfg.server.AllowSignup, "mail", mail.Describe(cfg.server.SMTP))
	failed := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			serve := s.ListenAndServe
			if s.TLSConfig != nil {
				serve = func() error { return s.ListenAndServeTLS("", "") }
			}
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("serving %s: %w", s.Addr, err)
			}
		}()
	}
	select {
	case err := <-failed:
		for _, s := range servers {
			_ = s.Close()
		}
		return err
	case <-drained: // requests in flight have finished
		return nil
	}
}

// tlsConfig is the HTTPS configuration of --listen, or nil (plain HTTP) without a certificate.
// The pair is loaded once: a renewed certificate takes a restart.
func tlsConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading --tls-cert-file and --tls-key-file: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
