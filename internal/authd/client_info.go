package authd

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientInfo is the client a request came from, as sessions record it: for the session list,
// refresh token reuse detection and the audit log.
type clientInfo struct {
	UserAgent string
	Address   string
}

// clientOf names the requesting client: user agent and address (the TCP peer, or the client a
// trusted proxy names).
func (s *Server) clientOf(r *http.Request) clientInfo {
	return clientInfo{UserAgent: r.UserAgent(), Address: clientAddress(r, s.cfg.Throttle.TrustedProxies)}
}

// clientAddress is the address of the client that sent r: the TCP peer, or, when the peer is one
// of trusted proxies, the rightmost address of X-Forwarded-For that is not itself a trusted proxy
// (what a client writes further left is its own claim and is ignored).
func clientAddress(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(peer.Unmap(), trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // an unparsable hop: trust nothing to its left
		}
		if !isTrusted(hop.Unmap(), trusted) {
			return hop.Unmap().String()
		}
		host = hop.Unmap().String()
	}
	return host
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
