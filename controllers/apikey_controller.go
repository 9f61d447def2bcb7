package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
)

// APIKeyStore is the database side of the APIKey controller.
type APIKeyStore interface {
	CurrentAPIKey(ctx context.Context, uid string) (*db.APIKeyRow, error)
	IssueAPIKey(ctx context.Context, k db.APIKey, key db.NewAPIKey, grace time.Duration, reason string, actor db.Actor) (db.APIKeyRow, error)
	SyncAPIKey(ctx context.Context, k db.APIKey, actor db.Actor) (bool, error)
	RevokeAPIKeys(ctx context.Context, uid, name string, actor db.Actor) error
	NoticeAPIKeyExpiry(ctx context.Context, keyRowID string, actor db.Actor, compose func(to string) (mail.Message, error)) (int, error)
}

// APIKeyReconciler issues, rotates and revokes API keys; the plaintext goes only into the Secret.
type APIKeyReconciler struct {
	client.Client
	// APIReader reads Secrets the cache does not hold (those the operator did not label).
	APIReader client.Reader
	Store     APIKeyStore
	Recorder  events.EventRecorder
	// ResyncPeriod is how often a Ready key is reconciled again.
	ResyncPeriod time.Duration
	// RotationGrace is how long a rotated-out key keeps working.
	RotationGrace time.Duration
	// Mail tells the organization's Owners and Admins of keys about to expire; nil sends nothing.
	Mail *mail.Mailer
	// Options tune concurrency and retry backoff.
	Options controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
}

type apiKeyScope struct {
	tenantScope
	key *tenancyv1.APIKey
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=apikeys,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=apikeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=apikeys/finalizers,verbs=update

// Reconcile brings one APIKey's key, row and Secret in line with its spec.
func (r *APIKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.APIKey]{
		client:    r.Client,
		ownWrites: &r.ownStatus,
		resync:    r.ResyncPeriod,
		newObject: func() *tenancyv1.APIKey { return &tenancyv1.APIKey{} },
		reconcileNormal: func(ctx context.Context, k *tenancyv1.APIKey) (ctrl.Result, error) {
			return runPhases(ctx, &apiKeyScope{key: k}, r.resolveTenant, r.reconcileKey, r.noticeExpiry)
		},
		cleanUp: r.cleanUp,
	}.reconcile(ctx, req)
}

func (r *APIKeyReconciler) resolveTenant(ctx context.Context, s *apiKeyScope) (ctrl.Result, error) {
	return resolveTenant(ctx, r.Client, s.key, &s.tenantScope)
}

// reconcileKey issues a key when there is none, when spec.rotation changed, or when its Secret
// or row went missing; otherwise it keeps the row's role, scope and expiry in line with the spec.
func (r *APIKeyReconciler) reconcileKey(ctx context.Context, s *apiKeyScope) (ctrl.Result, error) {
	k := s.key
	want := db.APIKey{
		UID:            string(k.UID),
		Name:           k.Name,
		OrganizationID: s.org.Status.ID,
		ProjectID:      s.projectID,
		Role:           string(k.Spec.Role),
		Rotation:       k.Spec.Rotation,
	}
	if k.Spec.ExpiresAt != nil {
		t := k.Spec.ExpiresAt.UTC()
		want.ExpiresAt = &t
	}
	secretName := k.SecretNameOrDefault()
	secret, secretFound, err := getSecret(ctx, r.Client, r.APIReader, k.Namespace, secretName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secretFound && !metav1.IsControlledBy(secret, k) {
		return ctrl.Result{}, secretConflict(secretName)
	}
	current, err := r.Store.CurrentAPIKey(ctx, want.UID)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The cache may lag behind the Secret the previous reconcile wrote: confirm with the API
	// server before rotating because of what the cache shows. (A Secret missing from the cache was
	// already looked up there by getSecret.)
	if current != nil && secretFound && string(secret.Data[tenancyv1.APIKeyIDSecretKey]) != current.KeyID {
		fresh := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: secretName}, fresh)
		switch {
		case apierrors.IsNotFound(err):
			secret, secretFound = &corev1.Secret{}, false
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("getting secret %s: %w", secretName, err)
		case !metav1.IsControlledBy(fresh, k):
			return ctrl.Result{}, secretConflict(secretName)
		default:
			secret = fresh
		}
	}

	reason := issueReason(k, current, want.Rotation, secret, secretFound)
	if reason == reasonSecretDeleted {
		r.Recorder.Eventf(k, nil, corev1.EventTypeWarning, "SecretDeleted", "RotateKey",
			"Secret %s was deleted; issuing a new key (the previous one works for %s more)", secretName, r.RotationGrace)
	}
	if reason != "" {
		row, err := r.issueKey(ctx, k, want, secret, secretFound, reason)
		if err != nil {
			return ctrl.Result{}, err
		}
		current = &row
	} else {
		changed, err := r.Store.SyncAPIKey(ctx, want, actorOf(k, "apikey"))
		if err != nil {
			return ctrl.Result{}, err
		}
		if changed && k.Status.ObservedGeneration == k.Generation {
			r.Recorder.Eventf(k, nil, corev1.EventTypeWarning, "DriftRestored", "SyncKey",
				"The row of key %s was changed outside the operator and has been restored", current.KeyID)
		}
	}

	k.Status.ID = current.ID
	k.Status.KeyID = current.KeyID
	k.Status.Prefix = current.Prefix
	k.Status.ExpiresAt = k.Spec.ExpiresAt
	rotatedAt := metav1.NewTime(current.CreatedAt.UTC().Truncate(time.Second))
	k.Status.RotatedAt = &rotatedAt
	return ctrl.Result{}, nil
}

// expiryNoticeWindow is how long before its expiry a key's organization is told.
const expiryNoticeWindow = 7 * 24 * time.Hour

// noticeExpiry mails the organization's Owners and Admins once its key is within
// expiryNoticeWindow of spec.expiresAt, and comes back when the window opens.
func (r *APIKeyReconciler) noticeExpiry(ctx context.Context, s *apiKeyScope) (ctrl.Result, error) {
	k := s.key
	if r.Mail == nil || k.Spec.ExpiresAt == nil {
		return ctrl.Result{}, nil
	}
	expires := k.Spec.ExpiresAt.Time
	switch left := time.Until(expires); {
	case left <= 0:
		return ctrl.Result{}, nil
	case left > expiryNoticeWindow:
		return ctrl.Result{RequeueAfter: left - expiryNoticeWindow}, nil
	}
	queued, err := r.Store.NoticeAPIKeyExpiry(ctx, k.Status.ID, actorOf(k, "apikey"), func(to string) (mail.Message, error) {
		return r.Mail.Templates.Render(mail.APIKeyExpiring, to, mail.Data{
			KeyName: k.Name, Organization: orgTitle(s.org), Project: k.Spec.Project, ExpiresAt: expires})
	})
	if queued > 0 {
		r.Mail.Dispatcher.Poke()
	}
	return ctrl.Result{}, err
}

// Why a new key is issued: the audit log records it, and a rotation's Event says it.
const (
	reasonCreated       = "created"
	reasonRowLost       = "the key's database row was removed or revoked by hand"
	reasonRotation      = "spec.rotation changed"
	reasonSecretDeleted = "its Secret was deleted"
	reasonSecretStale   = "its Secret no longer holds the current key"
)

// issueReason says why k needs a new key, or "" when its current one (the database's current
// row, nil when there is none) stays: the first key, a row lost or revoked by hand, a new
// spec.rotation (wantRotation), or a Secret that is gone or holds another key. A row that goes
// missing after the first key is a loss, not a creation, since the status already names a key.
func issueReason(k *tenancyv1.APIKey, current *db.APIKeyRow, wantRotation string, secret *corev1.Secret, secretFound bool) string {
	switch {
	case current == nil && k.Status.KeyID == "":
		return reasonCreated
	case current == nil || current.Revoked:
		return reasonRowLost
	case current.Rotation != wantRotation:
		return reasonRotation
	case !secretFound:
		return reasonSecretDeleted
	case string(secret.Data[tenancyv1.APIKeyIDSecretKey]) != current.KeyID:
		return reasonSecretStale
	}
	return ""
}

// issueKey generates a key, records its hash, and writes the plaintext into the Secret. Should
// writing the Secret fail, the next reconcile sees a Secret without the current key and issues
// another: a key is never left in the database without its Secret.
func (r *APIKeyReconciler) issueKey(ctx context.Context, k *tenancyv1.APIKey, want db.APIKey, secret *corev1.Secret, exists bool, reason string) (db.APIKeyRow, error) {
	key, err := apikey.New()
	if err != nil {
		return db.APIKeyRow{}, err
	}
	row, err := r.Store.IssueAPIKey(ctx, want, db.NewAPIKey{KeyID: key.ID, Prefix: key.DisplayPrefix(), Hash: key.Hash()},
		r.RotationGrace, reason, actorOf(k, "apikey"))
	if err != nil {
		return db.APIKeyRow{}, err
	}

	err = writeOwnedSecret(ctx, r.Client, r.APIReader, k, secret, exists, k.SecretNameOrDefault(), nil,
		map[string][]byte{tenancyv1.APIKeySecretKey: []byte(key.Plaintext), tenancyv1.APIKeyIDSecretKey: []byte(key.ID)})
	if err != nil {
		return db.APIKeyRow{}, err
	}
	// The first key is told by the status (keyID, prefix); a rotation gets an Event.
	if reason != reasonCreated {
		r.Recorder.Eventf(k, secret, corev1.EventTypeNormal, "KeyRotated", "RotateKey",
			"Issued key %s into Secret %s because %s; the previous key works for %s more", key.ID, secret.Name, reason, r.RotationGrace)
	}
	return row, nil
}

// cleanUp revokes every key of the resource at once (the rows stay for audit) and deletes its
// Secret.
func (r *APIKeyReconciler) cleanUp(ctx context.Context, k *tenancyv1.APIKey) error {
	if err := r.Store.RevokeAPIKeys(ctx, string(k.UID), k.Name, actorOf(k, "apikey")); err != nil {
		return err
	}
	return deleteOwnedSecret(ctx, r.Client, k, k.SecretNameOrDefault())
}

// SetupWithManager registers the controller; tenant.Setup must have run.
func (r *APIKeyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	wakeKeys := requestsForScopedObjects(r.Client, func() client.ObjectList { return &tenancyv1.APIKeyList{} })
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.APIKey{}, builder.WithPredicates(specChanged)).
		Owns(&corev1.Secret{}).
		Watches(&tenancyv1.Organization{}, handler.EnqueueRequestsFromMapFunc(wakeKeys),
			builder.WithPredicates(organizationBindingChanged)).
		Watches(&tenancyv1.Project{}, handler.EnqueueRequestsFromMapFunc(wakeKeys),
			builder.WithPredicates(rowIDChanged)).
		WithOptions(r.Options).
		Named("apikey").
		Complete(r)
}
