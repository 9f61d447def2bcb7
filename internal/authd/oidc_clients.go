package authd

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/loopback"
)

// The OAuth clients that OAuthClient objects register (the manager writes their rows; authd only
// reads them), and how a request proves it comes from one.

// Grant types an OAuthClient may list.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// oauthClient is one registered client.
type oauthClient struct {
	UID      string
	ClientID string
	// OrgID is the organization the client serves; nil serves every organization.
	OrgID                  *string
	DisplayName            string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	FirstParty             bool
	GrantTypes             []string
	Scopes                 []string
	// AccessTTL and RefreshTTL shorten authd's own limits when set.
	AccessTTL  time.Duration
	RefreshTTL time.Duration
}

// allows reports whether the client may use grantType.
func (c oauthClient) allows(grantType string) bool { return slices.Contains(c.GrantTypes, grantType) }

// allowsRedirect reports whether uri is one of the client's redirect URIs: the same string, or,
// for a loopback URI, the same but for the port (RFC 8252 section 7.3: a native app listens on
// whatever port it got).
func (c oauthClient) allowsRedirect(uri string) bool {
	return registeredURI(c.RedirectURIs, uri)
}

func registeredURI(registered []string, uri string) bool {
	if slices.Contains(registered, uri) {
		return true
	}
	got, err := url.Parse(uri)
	if err != nil || got.Scheme != "http" || !loopback.Host(got.Hostname()) {
		return false
	}
	for _, r := range registered {
		want, err := url.Parse(r)
		if err != nil || want.Scheme != "http" || !loopback.Host(want.Hostname()) {
			continue
		}
		if want.Hostname() == got.Hostname() && want.EscapedPath() == got.EscapedPath() && want.RawQuery == got.RawQuery &&
			got.User == nil && got.Fragment == "" {
			return true
		}
	}
	return false
}

// errUnknownClient is a client_id no OAuthClient has (or one deleted meanwhile).
var errUnknownClient = errors.New("unknown client")

// oauthClient reads the client of clientID.
func (s *Store) oauthClient(ctx context.Context, clientID string) (oauthClient, error) {
	c, _, err := s.oauthClientWithSecret(ctx, clientID, "")
	return c, err
}

// oauthClientWithSecret reads the client of clientID and, in the same query, whether secret is
// its current secret or a rotated-out one still within its grace period ("" is never valid).
func (s *Store) oauthClientWithSecret(ctx context.Context, clientID, secret string) (oauthClient, bool, error) {
	var c oauthClient
	var access, refresh *float64
	var secretValid bool
	var secretHash []byte // only its hash reaches the database; none matches nil
	if secret != "" {
		secretHash = hashOf(secret)
	}
	err := s.pool.QueryRow(ctx, `
		SELECT uid, client_id, organization_id, display_name, redirect_uris, post_logout_redirect_uris, public, first_party,
		       grant_types, scopes, extract(epoch FROM access_token_ttl)::float8, extract(epoch FROM refresh_token_ttl)::float8,
		       EXISTS (SELECT 1 FROM tenancy.oauth_client_secrets k
		               WHERE k.client_uid = c.uid AND k.secret_hash = $2 AND (k.expires_at IS NULL OR now() < k.expires_at))
		FROM tenancy.oauth_clients c WHERE client_id = $1`, clientID, secretHash).
		Scan(&c.UID, &c.ClientID, &c.OrgID, &c.DisplayName, &c.RedirectURIs, &c.PostLogoutRedirectURIs, &c.Public, &c.FirstParty,
			&c.GrantTypes, &c.Scopes, &access, &refresh, &secretValid)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, errUnknownClient
	}
	if access != nil {
		c.AccessTTL = time.Duration(*access * float64(time.Second))
	}
	if refresh != nil {
		c.RefreshTTL = time.Duration(*refresh * float64(time.Second))
	}
	return c, secretValid, err
}

// errInvalidClient answers a client that failed to authenticate (RFC 6749 section 5.2).
var errInvalidClient = errors.New("client authentication failed: unknown client, wrong secret, or a secret sent by a public client")

// authenticateClient finds the OAuth client a token request comes from: a confidential client by
// its secret (HTTP Basic, RFC 6749 section 2.3.1, or client_secret_post), a public one by its
// client_id alone. It answers errInvalidClient for anything else. The form must be parsed.
func (s *Server) authenticateClient(r *http.Request) (oauthClient, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// Basic credentials are form-encoded first (RFC 6749 section 2.3.1).
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil || r.PostForm.Has("client_secret") {
			return oauthClient{}, errInvalidClient
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" || len(id) > 512 || len(secret) > 256 {
		return oauthClient{}, errInvalidClient
	}
	c, secretValid, err := s.store.oauthClientWithSecret(r.Context(), id, secret)
	switch {
	case errors.Is(err, errUnknownClient):
		return c, errInvalidClient
	case err != nil:
		return c, err
	case c.Public && secret != "", !c.Public && !secretValid:
		return c, errInvalidClient
	}
	return c, nil
}

// hasClientAuthentication reports whether a token request names a client at all.
func hasClientAuthentication(r *http.Request) bool {
	_, _, basic := r.BasicAuth()
	return basic || r.PostForm.Has("client_id")
}

// invalidClient answers errInvalidClient: 401, with a challenge when the client tried HTTP Basic.
func invalidClient(w http.ResponseWriter, r *http.Request) {
	if _, _, basic := r.BasicAuth(); basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="tenancy"`)
	}
	writeError(w, http.StatusUnauthorized, "invalid_client", errInvalidClient.Error())
}
