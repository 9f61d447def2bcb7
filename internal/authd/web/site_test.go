package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewSiteSecuresCookiesBeyondLocalDevelopment(t *testing.T) {
	for _, tc := range []struct {
		publicURL, origin string
		secure            bool
	}{
		{publicURL: "https://auth.example.com", origin: "https://auth.example.com", secure: true},
		{publicURL: "http://auth.example.com", origin: "http://auth.example.com", secure: true},
		{publicURL: "http://localhost:8090", origin: "http://localhost:8090"},
		{publicURL: "http://127.0.0.1:8090/", origin: "http://127.0.0.1:8090"},
		{publicURL: "http://[::1]:8090", origin: "http://[::1]:8090"},
		{publicURL: "https://localhost", origin: "https://localhost", secure: true},
		{publicURL: "", secure: true},
		{publicURL: "http://bad host/", secure: true},
	} {
		if got := NewSite(tc.publicURL); got != (Site{origin: tc.origin, secure: tc.secure}) {
			t.Errorf("NewSite(%q) = %+v, want origin %q secure %t", tc.publicURL, got, tc.origin, tc.secure)
		}
	}
}

func TestCookiesOfASecureSite(t *testing.T) {
	site := NewSite("https://auth.example.com")
	if got := site.CookieName(SessionCookie); got != "__Host-tenancy_session" {
		t.Errorf("CookieName() = %q: a Secure site's cookies are __Host- cookies", got)
	}
	w := httptest.NewRecorder()
	site.SetCookie(w, SessionCookie, "token", time.Hour)
	site.ClearCookie(w, LoginCSRFCookie)
	got := w.Result().Header.Values("Set-Cookie")
	want := []string{
		"__Host-tenancy_session=token; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax",
		"__Host-tenancy_csrf=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Set-Cookie = %q, want %q", got, want)
	}
}

func TestCookiesOfLocalDevelopment(t *testing.T) {
	site := NewSite("http://localhost:8090")
	w := httptest.NewRecorder()
	site.SetCookie(w, SessionCookie, "token", time.Hour)
	if got, want := w.Header().Get("Set-Cookie"), "tenancy_session=token; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"; got != want {
		t.Errorf("Set-Cookie = %q, want %q: without TLS there is neither Secure nor __Host-", got, want)
	}
}

func TestFlashIsShownOnce(t *testing.T) {
	site := NewSite("https://auth.example.com")
	w := httptest.NewRecorder()
	site.Flash(w, "Project web created.")
	r := httptest.NewRequest(http.MethodGet, "/orgs/acme/projects", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	next := httptest.NewRecorder()
	if got := site.TakeFlash(next, r); got != "Project web created." {
		t.Errorf("TakeFlash() = %q", got)
	}
	if cleared := next.Result().Cookies(); len(cleared) != 1 || cleared[0].Name != "__Host-tenancy_flash" || cleared[0].MaxAge >= 0 {
		t.Errorf("the flash cookie is not removed once taken: %v", cleared)
	}
	if got := site.TakeFlash(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)); got != "" {
		t.Errorf("TakeFlash() without a cookie = %q", got)
	}
	garbled := httptest.NewRequest(http.MethodGet, "/", nil)
	garbled.AddCookie(&http.Cookie{Name: "__Host-tenancy_flash", Value: "not base64!"})
	if got := site.TakeFlash(httptest.NewRecorder(), garbled); got != "" {
		t.Errorf("TakeFlash() of a garbled cookie = %q", got)
	}
}

func TestSafeNextStaysOnTheSite(t *testing.T) {
	for next, want := range map[string]string{
		"/orgs/acme/members?project=web": "/orgs/acme/members?project=web",
		"":                               "/account",
		"https://evil.example/":          "/account",
		"//evil.example/":                "/account",
		"/\t/evil.example":               "/account",
		"/\\evil.example":                "/account",
		"relative/path":                  "/account",
		"/%zz":                           "/account",
	} {
		if got := SafeNext(next); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", next, got, want)
		}
	}
}
