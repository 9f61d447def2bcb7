package authd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
