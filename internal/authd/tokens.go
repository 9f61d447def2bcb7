package authd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tctx"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
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

// tokenIssuer mints access tokens.
type tokenIssuer struct {
	keys     *KeySource
	store    *Store
	issuer   string
	audience string
	ttl      time.Duration

	contextKeys sync.Map // kid → tctx.Key
}

// grant is what an access token grants.
type grant struct {
	Subject  string // a user id, or an API key's key id
	ClientID string
	UserID   string // set for people
	APIKeyID string // the key's row id, set for API keys
	OrgID    string
	Project  string
	Role     string
	Session  string // the refresh token family of a person's token
}

// issue signs an access token for g with the current signing key.
func (i *tokenIssuer) issue(ctx context.Context, g grant) (token string, expiresIn int, err error) {
	set := i.keys.Keys()
	if set == nil {
		return "", 0, errNoSigningKey
	}
	now := time.Now()
	key, ok := set.Signer(now)
	if !ok {
		return "", 0, errNoSigningKey
	}
	exp := now.Add(i.ttl)
	claims := tenancy.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.issuer, Subject: g.Subject, Audience: jwt.ClaimStrings{i.audience},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: newJTI(),
		},
		ClientID: g.ClientID, Org: g.OrgID, Project: g.Project, Role: g.Role, SessionID: g.Session,
		Scope: strings.Join(tenancy.Permissions(g.Role), " "),
	}
	if g.OrgID != "" {
		ctxKey, err := i.contextKey(ctx, key.KID)
		if err != nil {
			return "", 0, err
		}
		if claims.TCtx, err = tctx.Sign(ctxKey, tctx.Context{
			UserID: g.UserID, APIKeyID: g.APIKeyID, OrgID: g.OrgID, ProjectID: g.Project, Expires: exp,
		}); err != nil {
			return "", 0, err
		}
	}
	method := jwt.SigningMethod(jwt.SigningMethodEdDSA)
	if key.Alg == signing.ES256 {
		method = jwt.SigningMethodES256
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["typ"] = tenancy.TokenType
	t.Header["kid"] = key.KID
	token, err = t.SignedString(key.Private)
	return token, int(i.ttl.Seconds()), err
}

// contextKey reads (once) the context key that goes with signing key kid.
func (i *tokenIssuer) contextKey(ctx context.Context, kid string) (tctx.Key, error) {
	if k, ok := i.contextKeys.Load(kid); ok {
		return k.(tctx.Key), nil
	}
	k, err := i.store.contextKey(ctx, kid)
	if err != nil {
		return tctx.Key{}, err
	}
	i.contextKeys.Store(kid, k)
	return k, nil
}

func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
