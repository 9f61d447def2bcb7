package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// post is a form post of token in the csrf_token field, with an Origin header unless origin is "".
func post(token, origin string, cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"csrf_token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func TestLoginCSRFIsSetOnceAndDoubleSubmitted(t *testing.T) {
	site := NewSite("https://auth.example.com")
	w := httptest.NewRecorder()
	token := site.LoginCSRF(w, httptest.NewRequest(http.MethodGet, "/login", nil))
	set := w.Result().Cookies()
	if len(token) < 32 || len(set) != 1 || set[0].Name != "__Host-tenancy_csrf" || set[0].Value != token {
		t.Fatalf("a browser without the cookie gets a new token and its cookie: %q, %v", token, set)
	}
	again := httptest.NewRequest(http.MethodGet, "/login", nil)
	again.AddCookie(set[0])
	w = httptest.NewRecorder()
	if got := site.LoginCSRF(w, again); got != token || len(w.Result().Cookies()) != 0 {
		t.Errorf("a browser with the cookie keeps its token: %q, %v", got, w.Result().Cookies())
	}
	short := httptest.NewRequest(http.MethodGet, "/login", nil)
	short.AddCookie(&http.Cookie{Name: "__Host-tenancy_csrf", Value: "planted"})
	if got := site.LoginCSRF(httptest.NewRecorder(), short); got == "planted" {
		t.Error("a token shorter than 32 characters is replaced")
	}

	cookie := set[0]
	for _, tc := range []struct {
		reason string
		r      *http.Request
		ok     bool
	}{
		{"the cookie's token, no Origin header", post(token, "", cookie), true},
		{"the cookie's token from the site itself", post(token, "https://AUTH.example.com", cookie), true},
		{"another token", post(otherToken(token), "", cookie), false},
		{"no cookie", post(token, ""), false},
		{"from another site", post(token, "https://evil.example", cookie), false},
		{"from a sandboxed form", post(token, "null", cookie), false},
		{"an empty token and cookie", post("", "", &http.Cookie{Name: "__Host-tenancy_csrf", Value: ""}), false},
	} {
		if got := site.CheckLoginCSRF(tc.r); got != tc.ok {
			t.Errorf("%s: CheckLoginCSRF() = %t", tc.reason, got)
		}
	}
}

func TestSessionCSRFIsBoundToTheSession(t *testing.T) {
	site := NewSite("https://auth.example.com")
	token := SessionCSRF("tnr_session")
	if token == SessionCSRF("tnr_other") || token == "" {
		t.Fatal("each session has a token of its own")
	}
	if !site.CheckSessionCSRF(post(token, "https://auth.example.com"), "tnr_session") {
		t.Error("the session's own token is refused")
	}
	if site.CheckSessionCSRF(post(SessionCSRF("tnr_other"), ""), "tnr_session") {
		t.Error("another session's token is accepted")
	}
	if site.CheckSessionCSRF(post(token, "https://evil.example"), "tnr_session") {
		t.Error("a form from another site is accepted")
	}
	if NewSite("").CheckSessionCSRF(post(token, "https://auth.example.com"), "tnr_session") {
		t.Error("without a public URL, a form that names its origin cannot be told to be ours")
	}
}

// otherToken differs from token in its first character, whatever that character is.
func otherToken(token string) string {
	if token[0] == 'x' {
		return "y" + token[1:]
	}
	return "x" + token[1:]
}
