package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tctx"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// What a test of an application behind tenancy (a resource server, as examples/notes and
// examples/notes-python are) needs around it without the operator running: authd's part as an
// Issuer, organization and membership rows as the controllers and authd make them, and a database
// login that is only a member of one of the operator's roles, as a deployment gives the
// application.

// IssuerAudience is the audience of the tokens an Issuer signs, as authd's are for a person's
// session.
const IssuerAudience = "tenancy"

// IssuerOptions shape an Issuer.
type IssuerOptions struct {
	// Algorithms are the algorithms of the signing keys (signing.EdDSA, signing.ES256), one key
	// each, in Issuer.Keys in this order. None means one EdDSA key.
	Algorithms []string
	// TLS serves the discovery document and the JWKS over HTTPS, with a certificate of the test's
	// own written to Issuer.CAFile; otherwise they are served over plain HTTP.
	TLS bool
}

// Issuer does authd's part for an application's test: signing keys published in a JWKS, which an
// OpenID discovery document names, both on loopback (GET /.well-known/jwks.json and GET
// /.well-known/openid-configuration), and the context keys of the same ids in
// tenancy.context_keys, which sign the tokens' tctx.
type Issuer struct {
	// URL is the issuer: the tokens' iss, and the base of the discovery document and the JWKS.
	URL string
	// CAFile is the HTTPS server's certificate, PEM, for SSL_CERT_FILE; empty over HTTP.
	CAFile string
	// Keys are the signing keys, as IssuerOptions.Algorithms names them.
	Keys        []signing.Key
	contextKeys map[string]tctx.Key
	jwksFetches atomic.Int32
}

// StartIssuer makes the signing keys and their context keys in pg's database, serves the keys
// until t ends, and returns the Issuer.
func StartIssuer(ctx context.Context, t TB, pg *db.Postgres, opts IssuerOptions) *Issuer {
	t.Helper()
	algorithms := opts.Algorithms
	if len(algorithms) == 0 {
		algorithms = []string{signing.EdDSA}
	}
	now := time.Now()
	i := &Issuer{contextKeys: map[string]tctx.Key{}}
	contextKeys := make([]db.ContextKey, 0, len(algorithms))
	jwks := signing.JWKS{}
	for _, alg := range algorithms {
		key, err := signing.NewKey(alg, now, now)
		if err != nil {
			t.Fatal(err)
		}
		i.Keys = append(i.Keys, key)
		contextKeys = append(contextKeys, db.ContextKey{KID: key.KID})
		jwks.Keys = append(jwks.Keys, signing.ToJWK(key.KID, key.Public()))
	}
	if err := pg.SyncContextKeys(ctx, contextKeys, signing.MaxTokenLifetime); err != nil {
		t.Fatal(err)
	}
	for _, key := range i.Keys {
		contextKey := tctx.Key{ID: key.KID}
		if err := pg.Pool().QueryRow(ctx, "SELECT secret FROM tenancy.context_keys WHERE kid = $1", key.KID).Scan(&contextKey.Secret); err != nil {
			t.Fatal(err)
		}
		i.contextKeys[key.KID] = contextKey
	}

	// Listening first gives the handlers the issuer's URL before the server starts.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if opts.TLS {
		scheme = "https://"
	}
	base := scheme + listener.Addr().String()
	i.URL = base
	mux := http.NewServeMux()
	// The fields of authd's discovery document that a resource server reads.
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                base,
			"jwks_uri":                              base + "/.well-known/jwks.json",
			"token_endpoint":                        base + "/oauth2/token",
			"id_token_signing_alg_values_supported": algorithms,
		})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		i.jwksFetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jwks)
	})
	server := httptest.NewUnstartedServer(mux)
	_ = server.Listener.Close()
	server.Listener = listener
	if !opts.TLS {
		server.Start()
		t.Cleanup(server.Close)
		return i
	}
	server.StartTLS()
	t.Cleanup(server.Close)
	i.CAFile = filepath.Join(t.TempDir(), "issuer.crt")
	if err := os.WriteFile(i.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return i
}

// JWKSURL is where the Issuer publishes its keys.
func (i *Issuer) JWKSURL() string { return i.URL + "/.well-known/jwks.json" }

// JWKSFetches counts the requests for the JWKS so far.
func (i *Issuer) JWKSFetches() int { return int(i.jwksFetches.Load()) }

// ContextKey is the context key of the signing key kid, as tenancy.context_keys holds it; the zero
// Key for a kid the Issuer did not make.
func (i *Issuer) ContextKey(kid string) tctx.Key { return i.contextKeys[kid] }

// Claims are the claims authd gives a person's session token for role in the organization orgID,
// valid for 15 minutes from now, its tctx signed with contextKey.
func (i *Issuer) Claims(t TB, userID, orgID, role string, contextKey tctx.Key) tenancy.Claims {
	t.Helper()
	now := time.Now()
	exp := now.Add(15 * time.Minute)
	requestContext, err := tctx.Sign(contextKey, tctx.Context{UserID: userID, OrgID: orgID, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tenancy.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.URL, Subject: userID, Audience: jwt.ClaimStrings{IssuerAudience},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: RandomHex(t, 16),
		},
		ClientID: tenancy.SessionClientID, Org: orgID, Role: role,
		Scope: strings.Join(tenancy.Permissions(role), " "), TCtx: requestContext,
	}
}

// Token is a valid access token signed with key (one of Keys), as authd issues one.
func (i *Issuer) Token(t TB, key signing.Key, userID, orgID, role string) string {
	t.Helper()
	return i.Sign(t, key, key.KID, nil, i.Claims(t, userID, orgID, role, i.ContextKey(key.KID)))
}

// Sign signs claims with key, with the algorithm its key is for, under the header kid (which
// need not be key's), typ at+jwt and whatever header adds or replaces.
func (i *Issuer) Sign(t TB, key signing.Key, kid string, header map[string]any, claims tenancy.Claims) string {
	t.Helper()
	var method jwt.SigningMethod
	switch key.Alg {
	case signing.EdDSA:
		method = jwt.SigningMethodEdDSA
	case signing.ES256:
		method = jwt.SigningMethodES256
	default:
		t.Fatalf("testenv: no signing method for a key of algorithm %q", key.Alg)
	}
	token := jwt.NewWithClaims(method, claims)
	token.Header["typ"] = tenancy.TokenType
	token.Header["kid"] = kid
	for name, value := range header {
		token.Header[name] = value
	}
	signed, err := token.SignedString(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// CreateOrganization makes an organization row named name as the Organization controller would
// (tier Free, its namespace of the same name), and returns its id.
func CreateOrganization(ctx context.Context, t TB, pg *db.Postgres, name string) string {
	t.Helper()
	org, err := pg.UpsertOrganization(ctx, db.Organization{UID: uuid.NewString(), Name: name, Tier: "Free", Namespace: name}, db.Actor{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return org.ID
}

// CreateMember makes a user with an Active organization-wide membership of role in the
// organization orgID, and returns the user's id.
func CreateMember(ctx context.Context, t TB, pg *db.Postgres, orgID, email, role string) string {
	t.Helper()
	var id string
	if err := pg.Pool().QueryRow(ctx, `
		WITH u AS (INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id)
		INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
		SELECT gen_random_uuid(), $2, id, $3, 'Active' FROM u RETURNING user_id`, email, orgID, role).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// CreateLogin creates a login role, named prefix and a random suffix, that is a member of
// memberOf (tenancy_app, say) and nothing else, as a deployment gives an application or a
// component, and returns databaseURL rewritten to log in with it. databaseURL must log in as a
// superuser (Database.URL does). Roles are server-wide: the role is dropped when t ends, in a
// cleanup registered now, so that it runs after those registered later (cleanups run last-in
// first-out): once the pools and processes that log in with it are gone.
func CreateLogin(ctx context.Context, t TB, databaseURL, prefix, memberOf string) string {
	t.Helper()
	role, password := prefix+RandomHex(t, 4), RandomHex(t, 16)
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+
		" LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE "+pgx.Identifier{memberOf}.Sanitize()+" PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("creating the database login %s: %v", role, err)
	}
	serverURL, err := ServerURL()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), serverURL)
		if err != nil {
			t.Errorf("dropping the database login %s: %v", role, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("dropping the database login %s: %v", role, err)
		}
	})
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// RandomHex is n random bytes in hex.
func RandomHex(t TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
