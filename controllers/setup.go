package controllers

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/mail"
)

// Store is everything the controllers need from the database.
type Store interface {
	OrganizationStore
	ProjectStore
	MembershipStore
	APIKeyStore
	TenantTableStore
	AccountSuspensionStore
	AccountEraserStore
	OAuthClientStore
}

// Settings are the knobs shared by every controller.
type Settings struct {
	// ResyncPeriod is how often a Ready object is reconciled again.
	ResyncPeriod time.Duration
	// PublicURL is authd's public address, for invitation links.
	PublicURL string
	// InvitationTTL is how long an invitation token is valid.
	InvitationTTL time.Duration
	// APIKeyRotationGrace is how long a rotated-out API key, or OAuth client secret, keeps
	// working.
	APIKeyRotationGrace time.Duration
	// UsernamePrefix turns a member's email into their Kubernetes username (the API server's
	// --oidc-username-prefix).
	UsernamePrefix string
	// OperatorNamespace is the operator's own namespace, which no organization may claim; the
	// OAuthClients there are platform-wide.
	OperatorNamespace string
	// Mail sends invitations and notices of API keys about to expire; nil when the operator has
	// no SMTP server.
	Mail *mail.Mailer
	// Options tune workers; each controller gets a copy. A nil RateLimiter means retryRateLimiter.
	Options controller.Options
}

// optionsFor gives each controller its own rate limiter: they count failures per request.
func (s Settings) optionsFor() controller.Options {
	o := s.Options
	if o.RateLimiter == nil {
		o.RateLimiter = retryRateLimiter()
	}
	return o
}

// retryRateLimiter backs off failing objects from 100 ms up to 30 s (controller-runtime's default
// climbs to 1000 s, too slow to notice a database that is back), under an overall token bucket.
func retryRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
}

// SetupWithManager registers every controller with mgr; tenant.Setup must have run.
func SetupWithManager(mgr ctrl.Manager, store Store, s Settings) error {
	if err := (&OrganizationReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Store:             store,
		Recorder:          mgr.GetEventRecorder("tenancy-organization"),
		ResyncPeriod:      s.ResyncPeriod,
		UsernamePrefix:    s.UsernamePrefix,
		OperatorNamespace: s.OperatorNamespace,
		Options:           s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the organization controller: %w", err)
	}
	if err := (&ProjectReconciler{
		Client:       mgr.GetClient(),
		Store:        store,
		Recorder:     mgr.GetEventRecorder("tenancy-project"),
		ResyncPeriod: s.ResyncPeriod,
		Options:      s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the project controller: %w", err)
	}
	if err := (&MembershipReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Store:         store,
		Recorder:      mgr.GetEventRecorder("tenancy-membership"),
		ResyncPeriod:  s.ResyncPeriod,
		PublicURL:     strings.TrimSuffix(s.PublicURL, "/"),
		InvitationTTL: s.InvitationTTL,
		Mail:          s.Mail,
		Options:       s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the membership controller: %w", err)
	}
	if err := (&APIKeyReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Store:         store,
		Recorder:      mgr.GetEventRecorder("tenancy-apikey"),
		ResyncPeriod:  s.ResyncPeriod,
		RotationGrace: s.APIKeyRotationGrace,
		Mail:          s.Mail,
		Options:       s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the API key controller: %w", err)
	}
	if err := (&TenantTableReconciler{
		Client:       mgr.GetClient(),
		Store:        store,
		Recorder:     mgr.GetEventRecorder("tenancy-tenanttable"),
		ResyncPeriod: s.ResyncPeriod,
		Options:      s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the tenant table controller: %w", err)
	}
	if err := (&AccountSuspensionReconciler{
		Client:       mgr.GetClient(),
		Store:        store,
		Recorder:     mgr.GetEventRecorder("tenancy-accountsuspension"),
		ResyncPeriod: s.ResyncPeriod,
		Options:      s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the account suspension controller: %w", err)
	}
	if err := (&OAuthClientReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Store:             store,
		Recorder:          mgr.GetEventRecorder("tenancy-oauthclient"),
		ResyncPeriod:      s.ResyncPeriod,
		RotationGrace:     s.APIKeyRotationGrace,
		OperatorNamespace: s.OperatorNamespace,
		Options:           s.optionsFor(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the OAuth client controller: %w", err)
	}
	return mgr.Add(&AccountEraser{
		Client: mgr.GetClient(), Store: store, Mail: s.Mail, Interval: accountEraserInterval,
		Log: mgr.GetLogger().WithName("account-eraser"),
	})
}

// accountEraserInterval is how often the manager looks for accounts whose deletion was asked for:
// the person waits about this long (and the Memberships' removal) for the confirmation mail.
const accountEraserInterval = 5 * time.Second

// CacheOptions limits the manager's cache of Secrets and RBAC objects to those the operator
// writes: caching every one in the cluster would cost memory for nothing. No controller reads
// managed fields, so the cache drops them: they are a large part of every object, and the
// manager would otherwise keep them in memory, and copy them on every read, for nothing.
func CacheOptions() cache.Options {
	ours := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue})}
	return cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:      ours,
		&rbacv1.Role{}:        ours,
		&rbacv1.RoleBinding{}: ours,
		&rbacv1.ClusterRole{}: ours,
	}}
}
