package authd

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		reason, peer, forwardedFor, want string
		trusted                          []netip.Prefix
	}{
		{reason: "no proxies trusted: the peer", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1", want: "10.1.2.3"},
		{reason: "an untrusted peer's header is ignored", peer: "198.51.100.9:5000", forwardedFor: "203.0.113.1", trusted: proxies, want: "198.51.100.9"},
		{reason: "a trusted proxy names the client", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1", trusted: proxies, want: "203.0.113.1"},
		{reason: "what the client wrote further left is ignored", peer: "10.1.2.3:5000", forwardedFor: "192.0.2.66, 203.0.113.1", trusted: proxies, want: "203.0.113.1"},
		{reason: "a chain of trusted proxies", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1, 10.9.9.9", trusted: proxies, want: "203.0.113.1"},
		{reason: "IPv6", peer: "[fd00::1]:5000", forwardedFor: "2001:db8::7", trusted: proxies, want: "2001:db8::7"},
		{reason: "garbage stops the walk", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1, not-an-address", trusted: proxies, want: "10.1.2.3"},
		{reason: "only proxies: the leftmost", peer: "10.1.2.3:5000", forwardedFor: "10.7.7.7", trusted: proxies, want: "10.7.7.7"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/auth/login", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", tc.forwardedFor)
		if got := clientAddress(r, tc.trusted); got != tc.want {
			t.Errorf("%s: clientAddress() = %s, want %s", tc.reason, got, tc.want)
		}
	}
}
