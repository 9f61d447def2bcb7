package authd

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tctx"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

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
	MFA      bool   // the person's session began with a second factor
	// TTL shortens the access token's lifetime when set (an OAuthClient's accessTokenLifetime).
	TTL time.Duration
	// Scopes are the OpenID Connect scopes an OAuth client was granted; the scope claim lists them
	// before the role's permissions, and userinfo answers by them.
	Scopes []string
	// Permissions, when not nil, replace the role's permissions in the scope claim (a token
	// exchange that narrowed them).
	Permissions []string
	// Audience replaces the issuer's audience (a token exchange for another service).
	Audience string
	// Act is who acts for the subject (token exchange).
	Act *tenancy.Actor
}

// ttlFor is the lifetime of g's access token: the issuer's, or g's when shorter.
func (i *tokenIssuer) ttlFor(g grant) time.Duration {
	if g.TTL > 0 && g.TTL < i.ttl {
		return g.TTL
	}
	return i.ttl
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
	ttl := i.ttlFor(g)
	exp := now.Add(ttl)
	claims := tenancy.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.issuer, Subject: g.Subject, Audience: jwt.ClaimStrings{cmp.Or(g.Audience, i.audience)},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: newJTI(),
		},
		ClientID: g.ClientID, Org: g.OrgID, Project: g.Project, Role: g.Role, SessionID: g.Session, Act: g.Act,
		Scope: strings.Join(append(slices.Clone(g.Scopes), permissionsOf(g)...), " "),
	}
	if g.UserID != "" {
		claims.AMR = []string{"pwd"}
		if g.MFA {
			claims.AMR = append(claims.AMR, "otp")
		}
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
	token, err = sign(key, tenancy.TokenType, claims)
	return token, int(ttl.Seconds()), err
}

// permissionsOf is what g's scope claim lists after its OpenID Connect scopes.
func permissionsOf(g grant) []string {
	if g.Permissions != nil {
		return g.Permissions
	}
	return tenancy.Permissions(g.Role)
}

// sign signs claims with key as a JWS of type typ.
func sign(key signing.Key, typ string, claims jwt.Claims) (string, error) {
	method := jwt.SigningMethod(jwt.SigningMethodEdDSA)
	if key.Alg == signing.ES256 {
		method = jwt.SigningMethodES256
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["typ"] = typ
	t.Header["kid"] = key.KID
	return t.SignedString(key.Private)
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
