package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The pages are server-rendered, with no third-party assets and one small script (copy buttons
// and selectors that submit on change; every page works without it).

//go:embed templates static
var files embed.FS

// contentSecurityPolicy allows the page's own styles, script and forms, and nothing else.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Pages are the parsed templates, by page: the name of its file without .html.
type Pages map[string]*template.Template

// ParsePages parses every page of templates/ together with layout.html, which frames them.
func ParsePages() (Pages, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
		"whenPtr": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 MST")
		},
		"roles": func() []string { return []string{"Owner", "Admin", "Member", "Viewer"} },
		"button": func(action, csrf, label, class string) postButton {
			return postButton{Action: action, CSRF: csrf, Label: label, Class: class}
		},
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := Pages{}
	for _, name := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New(page).Funcs(funcs).ParseFS(files, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
		pages[page] = t
	}
	return pages, nil
}

// postButton is a form of one button that posts to Action, for the "button" template.
type postButton struct{ Action, CSRF, Label, Class string }

// Render writes page with the headers every HTML answer carries; data is what its template
// reads. The status is sent before the page, so a template's error can only be logged.
func (p Pages) Render(w http.ResponseWriter, status int, page string, data any) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	csp := contentSecurityPolicy
	if target := h.Get(formTargetHeader); target != "" {
		csp = strings.Replace(csp, "form-action 'self'", "form-action 'self' "+target, 1)
		h.Del(formTargetHeader)
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // invitation links carry their token: never to other sites
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return p[page].ExecuteTemplate(w, "layout", data)
}

// formTargetHeader carries AllowFormTarget's source from the handler to Render; it is never sent.
const formTargetHeader = "X-Tenancy-Form-Target"

// AllowFormTarget lets the page that Render writes next submit a form that ends at uri's origin.
// Browsers apply form-action to every redirect that follows a form, and the sign-in forms of the
// authorization flow end at the application's redirect URI. A loopback URI gets any port (RFC
// 8252), a private-use scheme its scheme.
func AllowFormTarget(w http.ResponseWriter, uri string) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || strings.ContainsAny(uri, " ;,'\"") {
		return
	}
	source := u.Scheme + ":"
	switch host := u.Hostname(); {
	case host == "":
	case u.Scheme == "http" && (host == "127.0.0.1" || host == "localhost" || host == "::1"):
		source = "http://" + u.Host
		if u.Port() != "" {
			source = "http://" + strings.TrimSuffix(u.Host, ":"+u.Port())
		}
		source += ":*"
	default:
		source = u.Scheme + "://" + u.Host
	}
	w.Header().Set(formTargetHeader, source)
}

// StaticFiles serves the pages' stylesheet and script under /static/, where the layout links
// them. They may be cached for an hour: they change only with authd's version.
func StaticFiles() http.Handler {
	static, _ := fs.Sub(files, "static")
	serve := http.FileServerFS(static)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		serve.ServeHTTP(w, r)
	}))
}
