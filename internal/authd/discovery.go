package authd

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/signing"
)

// discovery is the OpenID Connect discovery document: where the token endpoints and keys are.
func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(s.cfg.Issuer, "/")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"authorization_endpoint":                base + "/oauth2/authorize",
		"token_endpoint":                        base + "/oauth2/token",
		"userinfo_endpoint":                     base + "/oauth2/userinfo",
		"end_session_endpoint":                  base + "/oauth2/logout",
		"revocation_endpoint":                   base + "/oauth2/revoke",
		"introspection_endpoint":                base + "/oauth2/introspect",
		"grant_types_supported":                 []string{grantAuthorizationCode, grantRefreshToken, "client_credentials", grantTokenExchange},
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"id_token_signing_alg_values_supported": s.signingAlgorithms(),
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      []string{scopeOpenID, scopeProfile, scopeEmail, scopeOfflineAccess},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "at_hash", "sid",
			"email", "email_verified", "name", "org", "org_name", "role"},
		"prompt_values_supported":                        []string{"none", "login", "consent", "select_account"},
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"claims_parameter_supported":                     false,
		"authorization_response_iss_parameter_supported": true,
	})
}

// signingAlgorithms lists the algorithms of the published keys (the manager's
// --signing-key-algorithm, and the previous one while keys of both are published).
func (s *Server) signingAlgorithms() []string {
	algs := []string{}
	if set := s.keys.Keys(); set != nil {
		for _, k := range set.Published(time.Now()) {
			if !slices.Contains(algs, k.Alg) {
				algs = append(algs, k.Alg)
			}
		}
	}
	if len(algs) == 0 {
		algs = []string{signing.ES256, signing.EdDSA}
	}
	return algs
}

// jwks publishes the public keys that verify authd's tokens.
func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	set := s.keys.Keys()
	if set == nil {
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "no signing keys loaded yet")
		return
	}
	// Verifiers may cache this long: the manager publishes a new key 10 minutes before it signs.
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, set.JWKS(time.Now()))
}

// publishedKeys lets the SDK's verifier check authd's own tokens against its key set.
type publishedKeys struct{ source *KeySource }

func (p publishedKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if set := p.source.Keys(); set != nil {
		for _, k := range set.Published(time.Now()) {
			if k.KID == kid {
				return k.Public(), nil
			}
		}
	}
	return nil, fmt.Errorf("unknown key %q", kid)
}
