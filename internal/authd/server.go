package authd

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
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

	// addresses limits password attempts per client address; accounts and pairs slow down
	// failures per account, and per account and address (see beginPasswordAttempt).
	addresses *throttle
	accounts  *backoff
	pairs     *backoff
	// keyGuesses slows down a client address that presents keys of another shape than Tenancy's
	// (imported keys, which may be short) and misses; a client that presents valid ones never
	// waits.
	keyGuesses  *backoff
	keyUse      *keyUseRecorder
	auditWriter *auditWriter
	// hashing and hashMemory bound how many password hashes run at once, and with how much
	// memory (see verifyPassword).
	hashing    chan struct{}
	hashMemory *semaphore.Weighted
	// dummyHash is checked for unknown users, so that they cost what a real user costs.
	dummyHash string
	metrics   *metrics
	pages     web.Pages
	site      web.Site
	// mail is nil when authd sends no mail (no --smtp-url).
	mail *mail.Mailer
}

// NewServer wires authd.
func NewServer(cfg Config, store *Store, keys *KeySource, kube Kubernetes, log logr.Logger) (*Server, error) {
	if cfg.AccessTokenTTL <= 0 || cfg.AccessTokenTTL > signing.MaxTokenLifetime {
		return nil, fmt.Errorf("the access token lifetime must be between 0 and %s", signing.MaxTokenLifetime)
	}
	dummy, err := HashPassword("no user has this password", cfg.Passwords)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, store: store, keys: keys, kube: kube, log: log,
		tokens:      &tokenIssuer{keys: keys, store: store, issuer: cfg.Issuer, audience: cfg.Audience, ttl: cfg.AccessTokenTTL},
		addresses:   newThrottle(cfg.Throttle.AddressInterval, cfg.Throttle.AddressBurst),
		accounts:    newBackoff(cfg.Throttle.AccountFreeFailures, cfg.Throttle.AccountDelay, cfg.Throttle.AccountMaxDelay),
		pairs:       newBackoff(cfg.Throttle.AccountFreeFailures, cfg.Throttle.AccountDelay, cfg.Throttle.AccountMaxDelay),
		keyGuesses:  newBackoff(cfg.Throttle.AccountFreeFailures, cfg.Throttle.AccountDelay, cfg.Throttle.AccountMaxDelay),
		keyUse:      newKeyUseRecorder(store, log),
		auditWriter: newAuditWriter(store, log),
		hashing:     make(chan struct{}, runtime.GOMAXPROCS(0)),
		hashMemory:  semaphore.NewWeighted(hashMemoryBudgetKiB),
		dummyHash:   dummy,
		metrics:     newMetrics(),
	}
	s.verifier = tenancy.NewVerifier(cfg.Issuer, cfg.Audience, publishedKeys{keys})
	s.site = web.NewSite(cfg.PublicURL)
	if s.pages, err = web.ParsePages(); err != nil {
		return nil, err
	}
	if cfg.SMTP != nil {
		if s.mail, err = mail.NewMailer(store.pool, *cfg.SMTP, s.metrics.registry, log.WithName("mail")); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Run does authd's background work until ctx ends: following the signing keys, writing the
// audit log, sending mail, recording when API keys were last used, and forgetting idle throttles.
func (s *Server) Run(ctx context.Context) {
	go s.keys.Start(ctx)
	if s.mail != nil {
		mailDone := make(chan struct{})
		go func() { _ = s.mail.Dispatcher.Start(ctx); close(mailDone) }()
		defer func() { <-mailDone }()
	}
	auditDone := make(chan struct{})
	go func() { s.auditWriter.run(ctx); close(auditDone) }()
	defer func() { <-auditDone }()
	ticker := time.NewTicker(10 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.keyUse.flush(context.Background())
			return
		case <-ticker.C:
			s.keyUse.flush(ctx)
			s.addresses.forgetIdle()
			s.accounts.forgetIdle(time.Now())
			s.pairs.forgetIdle(time.Now())
			s.keyGuesses.forgetIdle(time.Now())
		}
	}
}
