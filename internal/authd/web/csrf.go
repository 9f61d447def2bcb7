package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// csrfField is the form field that carries the CSRF token (the templates name it too).
const csrfField = "csrf_token"

// SessionCSRF is the CSRF token of a session's forms: derived from the session's cookie, which a
// forged request cannot read.
func SessionCSRF(sessionCookie string) string {
	sum := sha256.Sum256([]byte("tenancy-csrf/" + sessionCookie))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckSessionCSRF verifies a form posted in the session whose cookie is sessionCookie.
func (s Site) CheckSessionCSRF(r *http.Request, sessionCookie string) bool {
	return s.sameOrigin(r) && csrfMatches(r.PostFormValue(csrfField), SessionCSRF(sessionCookie))
}

// LoginCSRF returns the double-submit token of the forms shown before a session exists, setting
// its cookie when the browser has none.
func (s Site) LoginCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := s.Cookie(r, LoginCSRFCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	s.SetCookie(w, LoginCSRFCookie, token, 12*time.Hour)
	return token
}

// CheckLoginCSRF verifies a form posted before a session exists.
func (s Site) CheckLoginCSRF(r *http.Request) bool {
	c, err := s.Cookie(r, LoginCSRFCookie)
	return err == nil && s.sameOrigin(r) && csrfMatches(r.PostFormValue(csrfField), c.Value)
}

// sameOrigin refuses a form posted from another origin, when the browser says where from.
func (s Site) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == "" // "null": a sandboxed or privacy-redirected form, never ours
	}
	return s.origin != "" && strings.EqualFold(origin, s.origin)
}

func csrfMatches(form, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(form), []byte(want)) == 1
}
