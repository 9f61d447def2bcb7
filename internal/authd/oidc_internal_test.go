package authd

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedirectURIsMatchExactlyOrLoopbackOnAnyPort(t *testing.T) {
	c := oauthClient{RedirectURIs: []string{"https://app.example/cb", "http://127.0.0.1:5556/callback", "http://[::1]/cb", "com.example.app:/cb"}}
	for uri, want := range map[string]bool{
		"https://app.example/cb":               true,
		"https://app.example/cb/":              false,
		"https://app.example/cb?x=1":           false,
		"https://app.example:8443/cb":          false,
		"HTTPS://app.example/cb":               false,
		"http://app.example/cb":                false,
		"http://127.0.0.1:5556/callback":       true,
		"http://127.0.0.1:40123/callback":      true, // RFC 8252: any port on loopback
		"http://127.0.0.1/callback":            true,
		"http://127.0.0.1:40123/other":         false,
		"http://localhost:5556/callback":       false, // another host, even if it resolves the same
		"http://user@127.0.0.1:1/callback":     false,
		"http://127.0.0.1:1/callback#fragment": false,
		"http://[::1]:9999/cb":                 true,
		"com.example.app:/cb":                  true,
		"com.example.evil:/cb":                 false,
		"":                                     false,
	} {
		if got := c.allowsRedirect(uri); got != want {
			t.Errorf("allowsRedirect(%q) = %v, want %v", uri, got, want)
		}
	}
}

func TestPKCEVerifierMustMatchTheS256Challenge(t *testing.T) {
	verifier := strings.Repeat("abcdefgh", 6)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	cases := []struct {
		challenge, verifier string
		ok                  bool
	}{
		{challenge, verifier, true},
		{challenge, verifier + "x", false},
		{challenge, "", false},
		{"", verifier, false}, // a verifier for a request that had no challenge is another request
		{"", "", true},
		{challenge, challenge, false}, // "plain" is not accepted
		{challenge, "short", false},
	}
	for _, c := range cases {
		if err := checkPKCE(c.challenge, c.verifier); (err == nil) != c.ok || (err != nil && !errors.Is(err, errCodePKCE)) {
			t.Errorf("checkPKCE(%q, %q) = %v, want ok=%v", c.challenge, c.verifier, err, c.ok)
		}
	}
}

func TestAuthorizeRequestValidation(t *testing.T) {
	confidential := oauthClient{Scopes: []string{"openid", "email"}, GrantTypes: []string{grantAuthorizationCode}}
	public := confidential
	public.Public = true
	challenge := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	ok := "response_type=code&scope=openid+email&code_challenge=" + challenge + "&code_challenge_method=S256"
	for _, c := range []struct {
		client oauthClient
		query  string
		code   string
	}{
		{confidential, ok, ""},
		{public, ok, ""},
		{confidential, "response_type=code&scope=openid", ""}, // PKCE is optional for confidential clients
		{public, "response_type=code&scope=openid", "invalid_request"},
		{confidential, "response_type=code&scope=openid&code_challenge=" + challenge + "&code_challenge_method=plain", "invalid_request"},
		{confidential, "response_type=token&scope=openid", "unsupported_response_type"},
		{confidential, "response_type=code&scope=openid+offline_access", "invalid_scope"},
		{confidential, "response_type=code", "invalid_scope"},
		{confidential, "response_type=code&scope=openid&prompt=none+login", "invalid_request"},
		{confidential, "response_type=code&scope=openid&prompt=bogus", "invalid_request"},
		{confidential, "response_type=code&scope=openid&max_age=-1", "invalid_request"},
		{confidential, "response_type=code&scope=openid&response_mode=fragment", "invalid_request"},
		{confidential, "response_type=code&scope=openid&request=eyJ", "request_not_supported"},
		{oauthClient{Scopes: []string{"openid"}, GrantTypes: []string{grantTokenExchange}}, "response_type=code&scope=openid", "unauthorized_client"},
	} {
		values, _ := url.ParseQuery(c.query)
		err := validateAuthorizeRequest(c.client, parseAuthorizeRequest(values))
		var refusal *authorizeError
		got := ""
		if errors.As(err, &refusal) {
			got = refusal.Code
		}
		if got != c.code {
			t.Errorf("%s (public %v): %v, want %q", c.query, c.client.Public, err, c.code)
		}
	}
}
