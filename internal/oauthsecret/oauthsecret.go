// Package oauthsecret makes the secrets of confidential OAuthClients: tcs_ and 43 base62
// characters carrying 256 random bits. Only their SHA-256 is stored (tenancy.oauth_client_secrets);
// authd hashes the secret a client presents and looks the hash up.
package oauthsecret

import (
	"crypto/rand"
	"fmt"

	"github.com/tenancy-dev/tenancy/internal/apikey"
)

const (
	// Prefix starts every client secret, so that secret scanners and people tell it apart from
	// an API key (tnc_).
	Prefix = "tcs_"
	// Length is the length of a whole client secret.
	Length        = len(Prefix) + secretLength
	secretLength  = 43 // 62^43 > 2^256
	secretEntropy = 32 // bytes
)

// New generates a client secret from crypto/rand.
func New() (string, error) {
	b := make([]byte, secretEntropy)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a client secret: %w", err)
	}
	return Prefix + apikey.Base62(b, secretLength), nil
}

// Hash is what the database stores: SHA-256 of the whole secret, as for API keys.
func Hash(secret string) []byte { return apikey.Hash(secret) }
