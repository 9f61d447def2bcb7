package authd

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// discovery is the OpenID Connect discovery document: where the token endpoints and keys are.
func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(s.cfg.Issuer, "/")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"token_endpoint":                        base + "/oauth2/token",
		"revocation_endpoint":                   base + "/oauth2/revoke",
		"introspection_endpoint":                base + "/oauth2/introspect",
		"grant_types_supported":                 []string{"client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported": []string{signing.EdDSA, signing.ES256},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      tenancy.Permissions(tenancy.RoleOwner),
	})
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
