package webhooks

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func TestRedirectURIProblem(t *testing.T) {
	const (
		httpOnlyLoopback = "http is allowed only on a loopback address (127.0.0.1, [::1] or localhost), for native apps: use https"
		privateForPublic = "a private-use scheme is for native apps, which are public clients: set spec.public, or use https"
		unknownScheme    = "must be https, http on a loopback address, or (for public clients) a private-use scheme in reverse-DNS form such as com.example.app:/callback"
	)
	cases := []struct {
		uri    string
		public bool
		want   string
		why    string
	}{
		{"https://app.example.com/callback", false, "", "https is the rule"},
		{"https://app.example.com:8443/oidc/callback?tenant=acme", false, "", "a port and a query are fine"},
		{"http://127.0.0.1:5556/callback", false, "", "loopback http, for a confidential client too (a local tool with a secret)"},
		{"http://[::1]:8080/cb", true, "", "the IPv6 loopback"},
		{"http://localhost/cb", true, "", "localhost"},
		{"com.example.app:/callback", true, "", "a private-use scheme for a native app"},
		{"com.example.app://callback", true, "", "the same with an authority"},
		{"http://app.example.com/callback", false, httpOnlyLoopback, "plain http elsewhere leaks the code"},
		{"http://localhost.evil.example/cb", true, httpOnlyLoopback, "a host that starts like localhost is not loopback"},
		{"http://127.0.0.2/cb", true, httpOnlyLoopback, "only 127.0.0.1 of the loopback network"},
		{"HTTP://app.example.com/cb", false, httpOnlyLoopback, "the scheme's case does not matter"},
		{"com.example.app:/callback", false, privateForPublic, "a confidential client has no business with an app's scheme"},
		{"com.example.app:", true, "must have a path after the scheme, such as com.example.app:/callback", "a scheme alone"},
		{"myapp:/callback", true, unknownScheme, "a private-use scheme must be reverse DNS"},
		{"javascript:alert(1)", true, unknownScheme, "never a script"},
		{"https://*.example.com/callback", false, "must not contain a wildcard (*): authd compares redirect URIs exactly", "no wildcard host"},
		{"https://app.example.com/*", false, "must not contain a wildcard (*): authd compares redirect URIs exactly", "no wildcard path"},
		{"https://app.example.com/cb#done", false, "must not have a fragment (#)", "RFC 6749 section 3.1.2"},
		{"https://user:pass@app.example.com/cb", false, "must not carry a user name or password", "no userinfo"},
		{"/callback", false, "must be an absolute URL, with a scheme", "relative"},
		{"https:///callback", false, "must name a host", "https without a host"},
		{"https://app.example.com/%zz", false, "is not a URL", "a bad escape"},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			if got := redirectURIProblem(tc.uri, tc.public); got != tc.want {
				t.Errorf("redirectURIProblem(%q, public %t) = %q, want %q (%s)", tc.uri, tc.public, got, tc.want, tc.why)
			}
		})
	}
}

func TestValidOAuthClientSpecNamesEachField(t *testing.T) {
	c := &tenancyv1.OAuthClient{Spec: tenancyv1.OAuthClientSpec{
		RedirectURIs:           []string{"https://app.example.com/cb", "http://app.example.com/cb"},
		PostLogoutRedirectURIs: []string{"https://*.example.com/"},
		GrantTypes:             []tenancyv1.OAuthGrantType{tenancyv1.GrantRefreshToken, tenancyv1.GrantTokenExchange},
	}}
	want := []string{
		`spec.redirectURIs[1]: Invalid value: "http://app.example.com/cb": http is allowed only on a loopback address (127.0.0.1, [::1] or localhost), for native apps: use https`,
		`spec.postLogoutRedirectURIs[0]: Invalid value: "https://*.example.com/": must not contain a wildcard (*): authd compares redirect URIs exactly`,
		`spec.grantTypes: Invalid value: ["refresh_token","urn:ietf:params:oauth:grant-type:token-exchange"]: refresh_token needs authorization_code: refresh tokens come from a sign-in`,
	}
	if diff := cmp.Diff(want, refusals(validOAuthClientSpec(c))); diff != "" {
		t.Errorf("refusals (-want +got):\n%s", diff)
	}
	c.Spec.GrantTypes = nil // the default, authorization_code alone
	c.Spec.RedirectURIs, c.Spec.PostLogoutRedirectURIs = c.Spec.RedirectURIs[:1], nil
	if errs := validOAuthClientSpec(c); len(errs) != 0 {
		t.Errorf("a valid spec is refused: %v", errs)
	}
}
