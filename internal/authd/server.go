// Package authd is the auth service: logins, sessions with rotating refresh tokens, API-key
// tokens (OAuth2 client_credentials), revocation, introspection, invitations and the JWKS. It is
// stateless apart from PostgreSQL and the signing keys the manager keeps in a Secret.
package authd

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// Config is authd's behaviour.
type Config struct {
	// Issuer is the iss of every token and the base of the discovery document.
	Issuer string
	// Audience is the aud of every access token.
	Audience string
	// AccessTokenTTL is the lifetime of access tokens (at most signing.MaxTokenLifetime).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token may wait for its use.
	RefreshTokenTTL time.Duration
	// SessionLifetime caps a session (a refresh token family), however often it is refreshed.
	SessionLifetime time.Duration
	// RefreshReuseInterval lets concurrent refreshes with the same token through.
	RefreshReuseInterval time.Duration
	// AllowSignup opens /auth/signup.
	AllowSignup bool
	// OperatorNamespace holds the signing keys; organizations made at signup go to their own.
	OperatorNamespace string
	// Passwords are the argon2id parameters of new hashes.
	Passwords PasswordParams
	// Throttle bounds password attempts per client address and per account.
	Throttle ThrottleConfig
	// SignupTimeout is how long signup waits for the new Organization and Membership to be Ready.
	SignupTimeout time.Duration
	// PublicURL is where people reach authd: the base of the web pages and of the cookies'
	// Secure attribute (left off only for http://localhost and 127.0.0.1, in development).
	PublicURL string
	// UsernamePrefix turns a user's email into their Kubernetes username, as the manager's
	// --username-prefix does.
	UsernamePrefix string
	// PlatformAdminUsers are Kubernetes usernames authd never acts as, whatever a user's email.
	PlatformAdminUsers []string
}

// maxBodyBytes bounds request bodies; maxHeaderBytes the header block (see NewHTTPServer).
const (
	maxBodyBytes   = 64 << 10
	maxHeaderBytes = 16 << 10
)

// Server is authd.
type Server struct {
	cfg      Config
	store    *Store
	keys     *KeySource
	kube     Kubernetes
	tokens   *tokenIssuer
	verifier *tenancy.Verifier
	log      logr.Logger

	addresses *throttle
	accounts  *backoff
	pairs     *backoff
	keyUse    *keyUseRecorder
	auditLog  *auditWriter
	hashing   chan struct{}
	dummyHash string
	metrics   *metrics
	pages     webPages
	site      webSite
}

// NewServer wires authd.
func NewServer(cfg Config, store *Store, keys *KeySource, kube Kubernetes, log logr.Logger) (*Server, error) {
	if cfg.AccessTokenTTL <= 0 || cfg.AccessTokenTTL > signing.MaxTokenLifetime {
		return nil, fmt.Errorf("the access token lifetime must be between 0 and %s", signing.MaxTokenLifetime)
	}
	// Unknown users are checked against this hash, so that they cost what a real user costs.
	dummy, err := HashPassword("no user has this password", cfg.Passwords)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, store: store, keys: keys, kube: kube, log: log,
		tokens:    &tokenIssuer{keys: keys, store: store, issuer: cfg.Issuer, audience: cfg.Audience, ttl: cfg.AccessTokenTTL},
		addresses: newThrottle(cfg.Throttle.AddressInterval, cfg.Throttle.AddressBurst),
		accounts:  newBackoff(cfg.Throttle.AccountFreeFailures, cfg.Throttle.AccountDelay, cfg.Throttle.AccountMaxDelay),
		pairs:     newBackoff(cfg.Throttle.AccountFreeFailures, cfg.Throttle.AccountDelay, cfg.Throttle.AccountMaxDelay),
		keyUse:    newKeyUseRecorder(),
		auditLog:  &auditWriter{store: store, log: log, entries: make(chan auditEntry, 4096)},
		hashing:   make(chan struct{}, runtime.GOMAXPROCS(0)),
		dummyHash: dummy,
		metrics:   newMetrics(),
	}
	s.verifier = tenancy.NewVerifier(cfg.Issuer, cfg.Audience, publishedKeys{keys})
	s.site = newWebSite(cfg.PublicURL)
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run does authd's background work until ctx ends: following the signing keys, writing the
// audit log, recording when API keys were last used, and forgetting idle throttles.
func (s *Server) Run(ctx context.Context) {
	go s.keys.Start(ctx)
	auditDone := make(chan struct{})
	go func() { s.auditLog.run(ctx); close(auditDone) }()
	defer func() { <-auditDone }()
	ticker := time.NewTicker(10 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushKeyUse(context.Background())
			return
		case <-ticker.C:
			s.flushKeyUse(ctx)
			s.addresses.forgetIdle()
			s.accounts.forgetIdle(time.Now())
			s.pairs.forgetIdle(time.Now())
		}
	}
}

func (s *Server) flushKeyUse(ctx context.Context) {
	if used := s.keyUse.take(); len(used) > 0 {
		if err := s.store.touchAPIKeys(ctx, used); err != nil {
			s.log.Error(err, "Recording when API keys were last used")
		}
	}
}

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(pattern, h))
	}
	s.jsonRoutes(route)
	s.routeWeb(mux, route)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.ready)
	return mux
}

// MetricsHandler serves the Prometheus metrics, on a listener of their own: authd's main port
// faces browsers and the Internet.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

// jsonRoutes are the endpoints that openapi.json describes.
func (s *Server) jsonRoutes(route func(pattern string, h http.HandlerFunc)) {
	// The OAuth2 endpoints take forms (RFC 6749); everything else takes JSON bodies only.
	withJSON := func(pattern string, h http.HandlerFunc) { route(pattern, requireJSON(h)) }
	withJSON("POST /auth/login", s.login)
	withJSON("POST /auth/refresh", s.refresh)
	withJSON("POST /auth/logout", s.logout)
	withJSON("GET /auth/me", s.me)
	withJSON("POST /auth/invitations/accept", s.acceptInvitation)
	withJSON("POST /auth/signup", s.signup)
	route("POST /oauth2/token", s.token)
	route("POST /oauth2/revoke", s.revoke)
	route("POST /oauth2/introspect", s.introspect)
	route("GET /.well-known/openid-configuration", s.discovery)
	route("GET /.well-known/jwks.json", s.jwks)
	route("GET /openapi.json", serveOpenAPI)
	s.routeAPI(withJSON)
}

// requireJSON refuses a request body that is not declared application/json with 415: a browser
// sends a cross-site form or text/plain body without asking first, never a JSON one.
func requireJSON(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || media != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
				return
			}
		}
		h(w, r)
	}
}

// NewHTTPServer serves h on addr with authd's limits.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h, MaxHeaderBytes: maxHeaderBytes,
		// Signup may wait --signup-timeout and then undo for up to 30 s more.
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
	}
}

// instrument counts and times requests, bounds bodies, and turns a panic into a JSON 500.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r.Body = http.MaxBytesReader(rec, r.Body, maxBodyBytes)
		defer func() {
			if p := recover(); p != nil {
				s.log.Error(fmt.Errorf("%v", p), "Handler panic", "route", route)
				writeError(rec, http.StatusInternalServerError, "server_error", "the server failed; try again")
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
			s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// ready is ready when the database answers and a signing key is loaded.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	if set := s.keys.Keys(); set == nil {
		http.Error(w, "no signing keys loaded", http.StatusServiceUnavailable)
		return
	} else if _, ok := set.Signer(time.Now()); !ok {
		http.Error(w, "no signing key", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(s.cfg.Issuer, "/")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"token_endpoint":                        base + "/oauth2/token",
		"revocation_endpoint":                   base + "/oauth2/revoke",
		"introspection_endpoint":                base + "/oauth2/introspect",
		"grant_types_supported":                 []string{"client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported": []string{signing.EdDSA, signing.ES256},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      tenancy.Permissions(tenancy.RoleOwner),
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	set := s.keys.Keys()
	if set == nil {
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "no signing keys loaded yet")
		return
	}
	// Verifiers may cache this long: the manager publishes a new key 10 minutes before it signs.
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, set.JWKS(time.Now()))
}

// publishedKeys lets the SDK's verifier check authd's own tokens against its key set.
type publishedKeys struct{ source *KeySource }

func (p publishedKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if set := p.source.Keys(); set != nil {
		for _, k := range set.Published(time.Now()) {
			if k.KID == kid {
				return k.Public(), nil
			}
		}
	}
	return nil, fmt.Errorf("unknown key %q", kid)
}

// decodeJSON reads a JSON body into v.
func decodeJSON(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("the body is larger than %d bytes", maxBodyBytes)
		}
		return errors.New("the body is not the JSON object this endpoint takes")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", firstNonEmpty(w.Header().Get("Cache-Control"), "no-store"))
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {error, error_description}, RFC 6749's shape, on every endpoint.
func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// failed answers an unexpected error: 503 with Retry-After when the database is unreachable
// (clients should retry), 500 otherwise; the details go to the log, never to the client.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	if unavailable(err) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable; retry shortly")
		return
	}
	s.log.Error(err, "Request failed", "path", r.URL.Path)
	writeError(w, http.StatusInternalServerError, "server_error", "the server failed; try again")
}

// unavailable reports a failure that retrying later fixes: the database or the Kubernetes API
// unreachable, overloaded or timing out, or no signing key loaded yet.
func unavailable(err error) bool {
	var netErr net.Error
	return db.IsUnavailable(err) || errors.Is(err, errNoSigningKey) || errors.As(err, &netErr) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsInternalError(err)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// clientOf names the requesting client: user agent and address (the TCP peer, or the client a
// trusted proxy names).
func (s *Server) clientOf(r *http.Request) requester {
	return requester{UserAgent: r.UserAgent(), Address: clientAddress(r, s.cfg.Throttle.TrustedProxies)}
}

// auditWriter writes audit rows in batches: one statement batch for whatever accumulated while
// the previous one was written, instead of a round trip per request.
type auditWriter struct {
	store   *Store
	log     logr.Logger
	entries chan auditEntry
}

// auditShutdownGrace bounds how long a stopping authd keeps retrying the audit rows it holds.
const auditShutdownGrace = 30 * time.Second

// run writes until ctx ends, then writes what is left, retrying for up to auditShutdownGrace.
func (a *auditWriter) run(ctx context.Context) {
	for {
		var batch []auditEntry
		select {
		case e := <-a.entries:
			batch = append(batch, e)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), auditShutdownGrace)
			defer cancel()
			for batch := a.drain(nil); len(batch) > 0; batch = a.drain(nil) {
				a.write(last, batch)
			}
			return
		}
		a.write(ctx, a.drain(batch))
	}
}

// drain adds what is queued, up to 1000 entries.
func (a *auditWriter) drain(batch []auditEntry) []auditEntry {
	for len(batch) < 1000 {
		select {
		case e := <-a.entries:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// write stores a batch. While the database is away it keeps retrying (until ctx ends), so an
// outage delays audit rows rather than losing them; requests meanwhile queue theirs, up to the
// queue's capacity. A batch the database refuses is written row by row, so that one bad row
// cannot lose the others; rows it cannot store are logged with their actions.
func (a *auditWriter) write(ctx context.Context, batch []auditEntry) {
	if len(batch) == 0 {
		return
	}
	var err error
	for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
		attempt, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = a.store.audit(attempt, batch)
		cancel()
		if err == nil || !db.IsUnavailable(err) || !sleep(ctx, wait) {
			break
		}
	}
	if err != nil && !db.IsUnavailable(err) && len(batch) > 1 {
		for _, e := range batch {
			a.write(ctx, []auditEntry{e})
		}
		return
	}
	if err != nil {
		actions := make([]string, 0, len(batch))
		for _, e := range batch {
			actions = append(actions, e.Action+" "+e.Target)
		}
		a.log.Error(err, "Writing the audit log; these rows are lost", "rows", actions)
	}
}

// sleep waits for d, or less when ctx ends first; it reports whether the whole time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// keyUseRecorder remembers when API keys were used, so that last_used_at costs one batched
// UPDATE every ten seconds rather than a write per token.
type keyUseRecorder struct {
	mu   sync.Mutex
	used map[string]time.Time
}

func newKeyUseRecorder() *keyUseRecorder { return &keyUseRecorder{used: map[string]time.Time{}} }

func (k *keyUseRecorder) record(id string) {
	k.mu.Lock()
	k.used[id] = time.Now()
	k.mu.Unlock()
}

func (k *keyUseRecorder) take() map[string]time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	used := k.used
	k.used = map[string]time.Time{}
	return used
}

// metrics are authd's Prometheus metrics.
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	reuseDetected prometheus.Counter
	auditDropped  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenancy_authd_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_logins_total", Help: "Password logins by result (ok, failed, throttled).",
		}, []string{"result"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_tokens_issued_total", Help: "Access tokens issued by grant.",
		}, []string{"grant"}),
		reuseDetected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenancy_authd_refresh_reuse_detected_total", Help: "Rotated refresh tokens presented again; each revoked its family.",
		}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenancy_authd_audit_rows_dropped_total", Help: "Audit rows dropped because the queue to the database was full.",
		}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.logins, m.tokens, m.reuseDetected, m.auditDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
