package web

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The site's cookies, by the names CookieName turns into the names browsers see.
const (
	// SessionCookie holds the refresh token of the browser's session.
	SessionCookie = "tenancy_session"
	// LoginCSRFCookie carries the double-submitted token of the forms shown before a session
	// exists (login, invitation); forms inside a session use a token derived from the session.
	LoginCSRFCookie = "tenancy_csrf"
	flashCookie     = "tenancy_flash"
)

// Site is what the pages derive from authd's public URL, once.
type Site struct {
	// origin is the Origin header of the site's own forms.
	origin string
	// secure cookies everywhere but on http://localhost and 127.0.0.1, so that development
	// works without TLS.
	secure bool
}

// NewSite reads publicURL, where people reach authd.
func NewSite(publicURL string) Site {
	u, err := url.Parse(publicURL)
	if err != nil {
		return Site{secure: true}
	}
	site := Site{secure: u.Scheme == "https" || !slices.Contains([]string{"localhost", "127.0.0.1", "::1"}, u.Hostname())}
	if u.Host != "" {
		site.origin = u.Scheme + "://" + u.Host
	}
	return site
}

// CookieName is name with the __Host- prefix when cookies are Secure: the browser then takes
// the cookie only from this host, over TLS, for every path, so a sibling subdomain cannot plant one.
func (s Site) CookieName(name string) string {
	if s.secure {
		return "__Host-" + name
	}
	return name
}

// Cookie is the request's cookie of the site called name.
func (s Site) Cookie(r *http.Request, name string) (*http.Cookie, error) {
	return r.Cookie(s.CookieName(name))
}

// SetCookie sets a cookie of the site; a negative maxAge removes it.
func (s Site) SetCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: s.CookieName(name), Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// ClearCookie removes a cookie of the site.
func (s Site) ClearCookie(w http.ResponseWriter, name string) {
	s.SetCookie(w, name, "", -time.Second)
}

// Flash shows a message on the next page, after a redirect.
func (s Site) Flash(w http.ResponseWriter, message string) {
	s.SetCookie(w, flashCookie, base64.RawURLEncoding.EncodeToString([]byte(message)), time.Minute)
}

// TakeFlash returns the message Flash left for this page ("" when there is none) and removes it.
func (s Site) TakeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := s.Cookie(r, flashCookie)
	if err != nil {
		return ""
	}
	s.ClearCookie(w, flashCookie)
	message, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	return string(message)
}

// SafeNext keeps a post-login redirect on this site: a path, nothing a browser could read as
// another host (browsers drop tabs and newlines and read \\ as /, so /\t/evil.example is
// //evil.example to them).
func SafeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/account"
	}
	return next
}
