package authd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/signing"
)

// KeySource follows the Secret tenancy-signing-keys that the manager keeps, so that authd signs
// with the current key and publishes every key verifiers need, without a restart.
type KeySource struct {
	Reader    client.Reader
	Namespace string
	Interval  time.Duration

	mu      sync.RWMutex
	set     *signing.Set
	version string
}

// Start reloads the key set every Interval until ctx ends.
func (k *KeySource) Start(ctx context.Context) {
	log := ctrl.LoggerFrom(ctx).WithName("keys")
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := k.Load(ctx); err != nil {
			log.Error(err, "Loading the signing keys")
		}
	}, k.Interval)
}

// Load reads the Secret and swaps in its keys when it changed.
func (k *KeySource) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	secret := &corev1.Secret{}
	if err := k.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: signing.SecretName}, secret); err != nil {
		return fmt.Errorf("reading secret %s/%s: %w", k.Namespace, signing.SecretName, err)
	}
	k.mu.RLock()
	unchanged := secret.ResourceVersion == k.version
	k.mu.RUnlock()
	if unchanged {
		return nil
	}
	set, err := signing.Parse(secret.Data[signing.SecretKey])
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.set, k.version = set, secret.ResourceVersion
	k.mu.Unlock()
	return nil
}

// Keys returns the current key set, or nil before the first load.
func (k *KeySource) Keys() *signing.Set {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.set
}

// errNoSigningKey means the manager has not made a signing key yet (or authd cannot read it).
var errNoSigningKey = errors.New("no signing key is available yet")
