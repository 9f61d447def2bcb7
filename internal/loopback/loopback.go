// Package loopback says whether a host names this machine: the one rule behind plain-HTTP
// redirect URIs of native apps (RFC 8252), kubectl-tenancy's issuer and listener, and SMTP
// without TLS.
package loopback

import "net"

// Host reports whether host is localhost or a loopback IP address (127.0.0.0/8, ::1).
func Host(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
