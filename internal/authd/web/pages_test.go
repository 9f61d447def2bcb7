package web

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePagesParsesEveryPageWithTheLayout(t *testing.T) {
	pages, err := ParsePages()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range pages {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"account", "apikeys", "audit", "authorize", "error", "forgot", "invite", "login", "login_mfa", "logout", "members", "projects", "reset", "verify"}
	if !slices.Equal(names, want) {
		t.Errorf("pages = %v, want %v (the layout is no page of its own)", names, want)
	}
}

func TestRenderSendsThePageWithItsHeaders(t *testing.T) {
	pages, err := ParsePages()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := pages.Render(w, http.StatusNotFound, "error", map[string]any{"Title": "Invitation"}); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusNotFound {
		t.Errorf("status %d", w.Code)
	}
	for header, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"Cache-Control":           "no-store",
	} {
		if got := w.Header().Get(header); got != want {
			t.Errorf("%s: %q, want %q", header, got, want)
		}
	}
	if body := w.Body.String(); !strings.Contains(body, "<title>Invitation · Tenancy</title>") || !strings.Contains(body, "<h1>Invitation</h1>") {
		t.Errorf("the page is not framed by the layout:\n%s", body)
	}
}

func TestTemplateFunctions(t *testing.T) {
	pages, err := ParsePages()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	w := httptest.NewRecorder()
	data := map[string]any{"Title": "acme", "Org": "acme", "Tab": "audit", "CSRF": "t",
		"Data": map[string]any{"Audit": []map[string]any{{"At": at, "Actor": "alice@example.com", "Action": "login.succeeded", "Target": "user/alice"}}}}
	if err := pages.Render(w, http.StatusOK, "audit", data); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.Body.String(), "2026-03-01 08:30 UTC") {
		t.Errorf("when shows times in UTC to the minute:\n%s", w.Body.String())
	}
}

func TestStaticFilesAreCachedAndNotSniffed(t *testing.T) {
	w := httptest.NewRecorder()
	StaticFiles().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/static/style.css", nil))
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("style.css: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Header().Get("Cache-Control") != "public, max-age=3600" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: %v", w.Header())
	}
	w = httptest.NewRecorder()
	StaticFiles().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/static/templates/layout.html", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("the templates are not static files: %d", w.Code)
	}
}

func TestAllowFormTargetAddsTheRedirectOriginToFormAction(t *testing.T) {
	pages, err := ParsePages()
	if err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]string{
		"https://app.example:8443/cb?x=1":  "form-action 'self' https://app.example:8443;",
		"http://127.0.0.1:5556/callback":   "form-action 'self' http://127.0.0.1:*;",
		"http://[::1]/cb":                  "form-action 'self' http://[::1]:*;",
		"com.example.app:/cb":              "form-action 'self' com.example.app:;",
		"https://evil.example/a'; script-": "form-action 'self';",
	} {
		w := httptest.NewRecorder()
		AllowFormTarget(w, uri)
		if err := pages.Render(w, http.StatusOK, "error", map[string]any{"Title": "x"}); err != nil {
			t.Fatal(err)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", uri, csp, want)
		}
		if w.Header().Get(formTargetHeader) != "" {
			t.Errorf("%s: the internal header was sent", uri)
		}
	}
}
