package controllers

import (
	"bytes"
	"context"
	"errors"
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
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/oauthsecret"
)

// OAuthClientStore is the database side of the OAuthClient controller.
type OAuthClientStore interface {
	UpsertOAuthClient(ctx context.Context, c db.OAuthClient, actor db.Actor) (db.UpsertResult, error)
	CurrentOAuthClientSecret(ctx context.Context, uid string) (*db.OAuthClientSecretRow, error)
	IssueOAuthClientSecret(ctx context.Context, c db.OAuthClient, hash []byte, rotation string, grace time.Duration, reason string, actor db.Actor) (db.OAuthClientSecretRow, error)
	DeleteOAuthClientSecrets(ctx context.Context, uid string) error
	DeleteOAuthClient(ctx context.Context, uid, clientID string, actor db.Actor) error
}

// OAuthClientReconciler registers OAuthClients in tenancy.oauth_clients, where authd reads them,
// and issues and rotates the secrets of confidential clients; the plaintext goes only into the
// Secret.
type OAuthClientReconciler struct {
	client.Client
	// APIReader reads Secrets the cache does not hold (those the operator did not label).
	APIReader client.Reader
	Store     OAuthClientStore
	Recorder  events.EventRecorder
	// ResyncPeriod is how often a Ready client is reconciled again.
	ResyncPeriod time.Duration
	// RotationGrace is how long a rotated-out client secret keeps working: the API keys' grace.
	RotationGrace time.Duration
	// OperatorNamespace holds the platform-wide clients, which belong to no organization.
	OperatorNamespace string
	// Options tune concurrency and retry backoff.
	Options controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
}

type oauthClientScope struct {
	client *tenancyv1.OAuthClient
	// org owns the client's namespace; nil for a platform-wide client.
	org *tenancyv1.Organization
	// row is what the database holds for the client once reconcileRow ran.
	row db.OAuthClient
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=oauthclients,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=oauthclients/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=oauthclients/finalizers,verbs=update

// Reconcile brings one OAuthClient's row, secret and Secret in line with its spec.
func (r *OAuthClientReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.OAuthClient]{
		client:    r.Client,
		ownWrites: &r.ownStatus,
		resync:    r.ResyncPeriod,
		newObject: func() *tenancyv1.OAuthClient { return &tenancyv1.OAuthClient{} },
		reconcileNormal: func(ctx context.Context, c *tenancyv1.OAuthClient) (ctrl.Result, error) {
			return runPhases(ctx, &oauthClientScope{client: c}, r.resolveOwner, r.reconcileRow, r.reconcileSecret)
		},
		cleanUp: r.cleanUp,
	}.reconcile(ctx, req)
}

// resolveOwner decides whose client it is: the platform's in the operator's namespace, else the
// Organization's that owns the namespace.
func (r *OAuthClientReconciler) resolveOwner(ctx context.Context, s *oauthClientScope) (ctrl.Result, error) {
	ns := s.client.Namespace
	if ns == r.OperatorNamespace {
		return ctrl.Result{}, nil
	}
	org, err := organizationOfNamespace(ctx, r.Client, ns)
	var stall *stalledError
	if errors.As(err, &stall) && stall.reason == tenancyv1.NamespaceNotBoundReason {
		return ctrl.Result{}, stalled(tenancyv1.NamespaceNotBoundReason,
			"Namespace %s is bound to no organization: an OAuthClient lives in an organization's namespace, or in the operator's namespace %s for a platform-wide client",
			ns, r.OperatorNamespace)
	}
	s.org = org
	return ctrl.Result{}, err
}

// reconcileRow upserts the client's row; a row deleted or changed by hand comes back.
func (r *OAuthClientReconciler) reconcileRow(ctx context.Context, s *oauthClientScope) (ctrl.Result, error) {
	c := s.client
	s.row = db.OAuthClient{
		UID:                    string(c.UID),
		ClientID:               c.ClientID(),
		Namespace:              c.Namespace,
		Name:                   c.Name,
		DisplayName:            c.Spec.DisplayName,
		RedirectURIs:           c.Spec.RedirectURIs,
		PostLogoutRedirectURIs: c.Spec.PostLogoutRedirectURIs,
		Public:                 c.Spec.Public,
		FirstParty:             c.Spec.FirstParty,
		GrantTypes:             stringsOf(c.GrantTypesOrDefault()),
		Scopes:                 stringsOf(c.ScopesOrDefault()),
		AccessTokenTTL:         durationOf(c.Spec.AccessTokenLifetime),
		RefreshTokenTTL:        durationOf(c.Spec.RefreshTokenLifetime),
	}
	if s.org != nil {
		s.row.OrganizationID = s.org.Status.ID
	}
	res, err := r.Store.UpsertOAuthClient(ctx, s.row, actorOf(c, "oauthclient"))
	if db.IsForeignKeyViolation(err) && s.org != nil {
		return ctrl.Result{}, waiting(tenancyv1.OrganizationNotReadyReason, "Organization %s has no database row yet", s.org.Name)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	reportRowChange(r.Recorder, c, c.Status.ClientID, res)
	c.Status.ClientID = res.ID
	return ctrl.Result{}, nil
}

// reconcileSecret keeps a confidential client's current secret in its Secret, issuing one when
// there is none, when spec.rotation or spec.secretName changed, or when the Secret or the secret's
// row went missing. A public client has neither.
func (r *OAuthClientReconciler) reconcileSecret(ctx context.Context, s *oauthClientScope) (ctrl.Result, error) {
	c := s.client
	if c.Spec.Public {
		c.Status.SecretName, c.Status.RotatedAt = "", nil
		return ctrl.Result{}, r.Store.DeleteOAuthClientSecrets(ctx, string(c.UID))
	}
	secretName := c.SecretNameOrDefault()
	secret, secretFound, err := getSecret(ctx, r.Client, r.APIReader, c.Namespace, secretName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secretFound && !metav1.IsControlledBy(secret, c) {
		return ctrl.Result{}, secretConflict(secretName)
	}
	current, err := r.Store.CurrentOAuthClientSecret(ctx, string(c.UID))
	if err != nil {
		return ctrl.Result{}, err
	}
	// The cache may lag behind the Secret the previous reconcile wrote: confirm with the API
	// server before rotating because of what the cache shows.
	if current != nil && secretFound && !holdsSecret(secret, c.ClientID(), current) {
		fresh := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: secretName}, fresh)
		switch {
		case apierrors.IsNotFound(err):
			secret, secretFound = &corev1.Secret{}, false
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("getting secret %s: %w", secretName, err)
		case !metav1.IsControlledBy(fresh, c):
			return ctrl.Result{}, secretConflict(secretName)
		default:
			secret = fresh
		}
	}

	reason := clientSecretIssueReason(c, current, secretName, secret, secretFound)
	if reason == reasonSecretDeleted {
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "SecretDeleted", "RotateSecret",
			"Secret %s was deleted; issuing a new client secret (the previous one works for %s more)", secretName, r.RotationGrace)
	}
	if reason != "" {
		row, err := r.issueSecret(ctx, c, s.row, secret, secretFound, reason)
		if err != nil {
			return ctrl.Result{}, err
		}
		current = &row
	}
	if previous := c.Status.SecretName; previous != "" && previous != secretName {
		// spec.secretName moved the secret: the Secret of the old name holds one on its way out.
		if err := deleteOwnedSecret(ctx, r.Client, c, previous); err != nil {
			return ctrl.Result{}, err
		}
	}
	c.Status.SecretName = secretName
	rotatedAt := metav1.NewTime(current.CreatedAt.UTC().Truncate(time.Second))
	c.Status.RotatedAt = &rotatedAt
	return ctrl.Result{}, nil
}

// Why a client secret is issued besides the reasons an API key shares (reasonCreated,
// reasonRotation, reasonSecretDeleted): the audit log records it, and a rotation's Event says it.
const (
	reasonSecretRowLost  = "the client's secret was removed from the database by hand"
	reasonSecretOutdated = "its Secret no longer holds the current client secret"
	reasonSecretRenamed  = "spec.secretName changed"
)

// clientSecretIssueReason says why c needs a new secret, or "" when its current one (nil when
// the database has none) stays: the first secret, a secret row lost by hand (with the client's
// row, say), a new spec.rotation, a new spec.secretName, or a Secret that is gone or holds
// another secret. The status tells a first secret from a lost one.
func clientSecretIssueReason(c *tenancyv1.OAuthClient, current *db.OAuthClientSecretRow, secretName string, secret *corev1.Secret, secretFound bool) string {
	switch {
	case current == nil && c.Status.RotatedAt == nil:
		return reasonCreated
	case current == nil:
		return reasonSecretRowLost
	case current.Rotation != c.Spec.Rotation:
		return reasonRotation
	case c.Status.SecretName != "" && c.Status.SecretName != secretName && !secretFound:
		return reasonSecretRenamed
	case !secretFound:
		return reasonSecretDeleted
	case !holdsSecret(secret, c.ClientID(), current):
		return reasonSecretOutdated
	}
	return ""
}

// holdsSecret reports whether secret holds the client id and the secret whose hash is current's.
func holdsSecret(secret *corev1.Secret, clientID string, current *db.OAuthClientSecretRow) bool {
	return string(secret.Data[tenancyv1.OAuthClientIDSecretKey]) == clientID &&
		bytes.Equal(oauthsecret.Hash(string(secret.Data[tenancyv1.OAuthClientSecretKey])), current.Hash)
}

// issueSecret generates a client secret, records its hash, and writes the plaintext into the
// Secret. Should writing the Secret fail, the next reconcile finds a Secret without the current
// secret and issues another: a secret is never left in the database without its Secret.
func (r *OAuthClientReconciler) issueSecret(ctx context.Context, c *tenancyv1.OAuthClient, row db.OAuthClient, secret *corev1.Secret, exists bool, reason string) (db.OAuthClientSecretRow, error) {
	plaintext, err := oauthsecret.New()
	if err != nil {
		return db.OAuthClientSecretRow{}, err
	}
	issued, err := r.Store.IssueOAuthClientSecret(ctx, row, oauthsecret.Hash(plaintext), c.Spec.Rotation, r.RotationGrace, reason, actorOf(c, "oauthclient"))
	if err != nil {
		return db.OAuthClientSecretRow{}, err
	}
	err = writeOwnedSecret(ctx, r.Client, r.APIReader, c, secret, exists, c.SecretNameOrDefault(), nil, map[string][]byte{
		tenancyv1.OAuthClientIDSecretKey: []byte(row.ClientID),
		tenancyv1.OAuthClientSecretKey:   []byte(plaintext),
	})
	if err != nil {
		return db.OAuthClientSecretRow{}, err
	}
	// The first secret is told by the status (rotatedAt); a rotation gets an Event.
	if reason != reasonCreated {
		r.Recorder.Eventf(c, secret, corev1.EventTypeNormal, "SecretRotated", "RotateSecret",
			"Issued a new client secret into Secret %s because %s; the previous one works for %s more", secret.Name, reason, r.RotationGrace)
	}
	return issued, nil
}

// cleanUp deletes the client's row, which ends its sessions and removes its secrets, codes and
// consents, and deletes its Secret.
func (r *OAuthClientReconciler) cleanUp(ctx context.Context, c *tenancyv1.OAuthClient) error {
	if err := r.Store.DeleteOAuthClient(ctx, string(c.UID), c.ClientID(), actorOf(c, "oauthclient")); err != nil {
		return err
	}
	if c.Spec.Public {
		return nil
	}
	if err := deleteOwnedSecret(ctx, r.Client, c, c.SecretNameOrDefault()); err != nil {
		return err
	}
	if previous := c.Status.SecretName; previous != "" && previous != c.SecretNameOrDefault() {
		return deleteOwnedSecret(ctx, r.Client, c, previous)
	}
	return nil
}

// SetupWithManager registers the controller; tenant.Setup must have run.
func (r *OAuthClientReconciler) SetupWithManager(mgr ctrl.Manager) error {
	wakeClients := requestsForScopedObjects(r.Client, func() client.ObjectList { return &tenancyv1.OAuthClientList{} })
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.OAuthClient{}, builder.WithPredicates(specChanged)).
		Owns(&corev1.Secret{}).
		Watches(&tenancyv1.Organization{}, handler.EnqueueRequestsFromMapFunc(wakeClients),
			builder.WithPredicates(organizationBindingChanged)).
		WithOptions(r.Options).
		Named("oauthclient").
		Complete(r)
}

// stringsOf turns a list of string-typed values into the []string a text[] column takes.
func stringsOf[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// durationOf is d's duration, or nil when unset.
func durationOf(d *metav1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	return &d.Duration
}
