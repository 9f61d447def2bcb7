package signing

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// ContextKeys keeps tenancy.context_keys in step with the signing keys: the request context in a
// token is signed under the context key of the same id as the token's signing key.
type ContextKeys interface {
	SyncContextKeys(ctx context.Context, keys []db.ContextKey, lifetime time.Duration) error
}

// Rotator keeps the Secret tenancy-signing-keys current: it creates it, adds successors on
// schedule, expires replaced keys, and mirrors the set into the context keys. It runs on the
// leader only.
type Rotator struct {
	// Reader reads the Secret from the API server (it may predate the operator's label, which
	// the manager's cache needs); Client writes it.
	Reader      client.Reader
	Client      client.Client
	Namespace   string
	Policy      Policy
	ContextKeys ContextKeys
	// Interval is how often the set is checked; keep it well below Policy.PublishAhead.
	Interval time.Duration
}

// NeedLeaderElection is true: one writer for the Secret.
func (r *Rotator) NeedLeaderElection() bool { return true }

// Start checks the key set every Interval until ctx ends, and every few seconds while it fails
// (the database may not be migrated yet).
func (r *Rotator) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("signing-keys")
	for {
		next := r.Interval
		if err := r.Sync(ctx, time.Now()); err != nil {
			log.Info("Keeping the signing keys current failed; retrying", "error", err.Error())
			next = min(5*time.Second, r.Interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// Sync brings the Secret and the context keys up to date at now.
func (r *Rotator) Sync(ctx context.Context, now time.Time) error {
	secret := &corev1.Secret{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: SecretName}, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting secret %s: %w", SecretName, err)
	}
	set := &Set{}
	if exists && len(secret.Data[SecretKey]) > 0 {
		if set, err = Parse(secret.Data[SecretKey]); err != nil {
			return err
		}
	}
	changed, err := set.Rotate(now, r.Policy)
	if err != nil {
		return err
	}
	// The context keys first: a signing key must never be used before its context key exists.
	if err := r.ContextKeys.SyncContextKeys(ctx, contextKeys(set), MaxTokenLifetime); err != nil {
		return err
	}
	labelled := secret.Labels[tenancyv1.ManagedByLabel] == tenancyv1.ManagedByValue
	if changed || !exists || !labelled {
		data, err := set.Marshal()
		if err != nil {
			return err
		}
		if !exists {
			secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: SecretName}}
		}
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels[tenancyv1.ManagedByLabel] = tenancyv1.ManagedByValue
		secret.Data = map[string][]byte{SecretKey: data}
		if exists {
			err = r.Client.Update(ctx, secret)
		} else {
			err = r.Client.Create(ctx, secret)
		}
		if err != nil {
			return fmt.Errorf("writing secret %s: %w", SecretName, err)
		}
	}
	return nil
}

// contextKeys is the schedule of every published key.
func contextKeys(set *Set) []db.ContextKey {
	keys := make([]db.ContextKey, 0, len(set.Keys))
	for _, k := range set.Keys {
		c := db.ContextKey{KID: k.KID, ExpiresAt: k.ExpiresAt}
		if k.ExpiresAt != nil {
			retired := k.ExpiresAt.Add(-MaxTokenLifetime)
			c.RetiredAt = &retired
		}
		keys = append(keys, c)
	}
	return keys
}
