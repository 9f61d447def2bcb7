package selfservice_test

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// browserish is an HTTP client with a cookie jar that shows redirects instead of following them.
type browserish struct {
	client *http.Client
	base   string
}

func newBrowserish(base string) *browserish {
	GinkgoHelper()
	jar, err := cookiejar.New(nil)
	Expect(err).NotTo(HaveOccurred())
	return &browserish{base: base, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browserish) get(path string) response {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	Expect(err).NotTo(HaveOccurred())
	return b.send(req)
}

// postForm posts a form as a browser on this site would (Origin set), or with origin when given.
func (b *browserish) postForm(path string, form url.Values, origin ...string) response {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", append(origin, b.base)[0])
	return b.send(req)
}

func (b *browserish) send(req *http.Request) response {
	GinkgoHelper()
	resp, err := b.client.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return response{StatusCode: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func csrfOf(page response) string {
	GinkgoHelper()
	m := csrfInput.FindStringSubmatch(page.Raw)
	Expect(m).To(HaveLen(2), "no CSRF token in %s", page.Raw)
	return m[1]
}

// cookie finds a Set-Cookie of an answer.
func cookie(r response, name string) *http.Cookie {
	GinkgoHelper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browserish) logIn(email string) {
	GinkgoHelper()
	page := b.get("/login")
	resp := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {email}, "password": {password}, "next": {"/account"}})
	Expect(resp.StatusCode).To(Equal(http.StatusSeeOther), resp.Raw)
}

var _ = Describe("The web pages over HTTP", func() {
	var t tenant
	BeforeEach(func(ctx SpecContext) { t = newTenant(ctx) })

	It("send a Content-Security-Policy and no-framing headers with every page", func() {
		b := newBrowserish(authdURL)
		b.logIn(t.owner)
		for _, path := range []string{"/login", "/invite?token=unknown", "/account", "/orgs/" + t.org.Name + "/members",
			"/orgs/" + t.org.Name + "/projects", "/orgs/" + t.org.Name + "/apikeys", "/orgs/" + t.org.Name + "/audit"} {
			page := b.get(path)
			Expect(page.Header.Get("Content-Type")).To(Equal("text/html; charset=utf-8"), path)
			Expect(page.Header.Get("Content-Security-Policy")).To(And(ContainSubstring("default-src 'none'"), ContainSubstring("script-src 'self'"),
				ContainSubstring("frame-ancestors 'none'")), path)
			Expect(page.Header.Get("X-Frame-Options")).To(Equal("DENY"), path)
			Expect(page.Header.Get("Referrer-Policy")).To(Equal("same-origin"), path)
			Expect(page.Raw).NotTo(MatchRegexp(`https?://(?:127\.0\.0\.1|localhost)[^"]*\.(?:js|css)|//cdn`), "only the page's own assets")
		}
		css := b.get("/static/style.css")
		Expect(css.StatusCode).To(Equal(http.StatusOK))
		Expect(css.Header.Get("Content-Type")).To(HavePrefix("text/css"))
	})

	It("sets HttpOnly SameSite=Lax cookies, not Secure on http://127.0.0.1", func() {
		b := newBrowserish(authdURL)
		page := b.get("/login")
		csrf := cookie(page, "tenancy_csrf")
		Expect(csrf).NotTo(BeNil())
		Expect(csrf.HttpOnly).To(BeTrue())
		Expect(csrf.SameSite).To(Equal(http.SameSiteLaxMode))
		Expect(csrf.Secure).To(BeFalse())
		resp := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {t.owner}, "password": {password}})
		Expect(resp.StatusCode).To(Equal(http.StatusSeeOther), resp.Raw)
		Expect(resp.Header.Get("Location")).To(Equal("/account"))
		session := cookie(resp, "tenancy_session")
		Expect(session).NotTo(BeNil())
		Expect(session.HttpOnly).To(BeTrue())
		Expect(session.SameSite).To(Equal(http.SameSiteLaxMode))
		Expect(session.Value).To(HavePrefix("tnr_"))
	})

	It("sets Secure cookies when the public URL is not a local http one", func() {
		conf := authdConf
		conf.PublicURL = "https://auth.tenancy.test"
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		startAuthd(listener, conf, authdDatabaseURL)
		page := newBrowserish("http://" + listener.Addr().String()).get("/login")
		Expect(page.StatusCode).To(Equal(http.StatusOK))
		csrf := cookie(page, "__Host-tenancy_csrf")
		Expect(csrf).NotTo(BeNil(), "Secure cookies take the __Host- prefix")
		Expect(csrf.Secure).To(BeTrue())
		Expect(csrf.Path).To(Equal("/"))
	})

	It("refuse a form without its CSRF token, with another session's token, or from another origin", func() {
		b := newBrowserish(authdURL)
		page := b.get("/login")
		noToken := b.postForm("/login", url.Values{"email": {t.owner}, "password": {password}})
		Expect(noToken.StatusCode).To(Equal(http.StatusForbidden))
		Expect(noToken.Raw).To(ContainSubstring("did not come from this site"))
		Expect(cookie(noToken, "tenancy_session")).To(BeNil())
		elsewhere := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {t.owner}, "password": {password}}, "https://evil.example")
		Expect(elsewhere.StatusCode).To(Equal(http.StatusForbidden))
		Expect(cookie(elsewhere, "tenancy_session")).To(BeNil())

		b.logIn(t.owner)
		other := newBrowserish(authdURL)
		other.logIn(t.admin)
		otherToken := csrfOf(other.get("/account"))
		form := url.Values{"current": {password}, "new": {"another long passphrase"}, "confirm": {"another long passphrase"}}
		Expect(b.postForm("/account/password", form).StatusCode).To(Equal(http.StatusForbidden))
		form.Set("csrf_token", otherToken)
		Expect(b.postForm("/account/password", form).StatusCode).To(Equal(http.StatusForbidden))
		form.Set("csrf_token", csrfOf(b.get("/account")))
		Expect(b.postForm("/account/password", form, "https://evil.example").StatusCode).To(Equal(http.StatusForbidden))
		// Nothing changed: the old password still logs in.
		Expect(post("/auth/login", "", map[string]string{"email": t.owner, "password": password}).StatusCode).To(Equal(http.StatusOK))
	})

	It("send a browser without a session to the login page, and show errors as sentences", func() {
		b := newBrowserish(authdURL)
		resp := b.get("/orgs/" + t.org.Name + "/members")
		Expect(resp.StatusCode).To(Equal(http.StatusSeeOther))
		Expect(resp.Header.Get("Location")).To(Equal("/login?next=%2Forgs%2F" + t.org.Name + "%2Fmembers"))

		unknown := b.get("/invite?token=tni_nothing")
		Expect(unknown.StatusCode).To(Equal(http.StatusNotFound))
		Expect(unknown.Raw).To(ContainSubstring("This invitation link is unknown, already used or expired."))

		page := b.get("/login")
		wrong := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {t.owner}, "password": {"wrong"}})
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(wrong.Raw).To(ContainSubstring("the email or the password is wrong"))
		Expect(wrong.Raw).To(ContainSubstring(`value="`+t.owner+`"`), "the email stays in the form")

		b.logIn(t.member)
		notMine := b.get("/orgs/no-such-org/members")
		Expect(notMine.StatusCode).To(Equal(http.StatusNotFound))
		Expect(notMine.Raw).To(ContainSubstring(`is not a member of an organization named &#34;no-such-org&#34;`))
		for _, page := range []response{unknown, wrong, notMine} {
			Expect(page.Raw).NotTo(ContainSubstring("goroutine"))
			Expect(page.Raw).NotTo(ContainSubstring(".go:"))
		}
	})

	It("keep a post-login redirect on the site", func() {
		for _, next := range []string{"//evil.example/x", "/\\evil.example", "/\t/evil.example", "https://evil.example/", "/\n/evil.example"} {
			b := newBrowserish(authdURL)
			page := b.get("/login?next=" + url.QueryEscape(next))
			resp := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {t.owner}, "password": {password}, "next": {next}})
			Expect(resp.StatusCode).To(Equal(http.StatusSeeOther))
			Expect(resp.Header.Get("Location")).To(Equal("/account"), "next=%q", next)
		}
		b := newBrowserish(authdURL)
		page := b.get("/login")
		resp := b.postForm("/login", url.Values{"csrf_token": {csrfOf(page)}, "email": {t.owner}, "password": {password}, "next": {"/orgs/" + t.org.Name + "/apikeys?project=web"}})
		Expect(resp.Header.Get("Location")).To(Equal("/orgs/" + t.org.Name + "/apikeys?project=web"))
	})

	It("show a malformed audit page request as a refusal, and end the old session at a new login", func() {
		b := newBrowserish(authdURL)
		b.logIn(t.admin)
		for _, query := range []string{"?limit=0", "?limit=x", "?before=-1"} {
			page := b.get("/orgs/" + t.org.Name + "/audit" + query)
			Expect(page.StatusCode).To(Equal(http.StatusBadRequest), query)
			Expect(page.Raw).To(ContainSubstring("must be"), query)
		}
		first := items(do(http.MethodGet, "/api/v1/me/sessions", login(t.admin, t.org.Name), nil))
		b.logIn(t.admin)
		second := items(do(http.MethodGet, "/api/v1/me/sessions", login(t.admin, t.org.Name), nil))
		Expect(second).To(HaveLen(len(first)+1), "the token logins add one; the browser's second login replaced its first")
	})

	It("log out: the session's refresh token stops working", func() {
		b := newBrowserish(authdURL)
		b.logIn(t.viewer)
		account := b.get("/account")
		Expect(account.StatusCode).To(Equal(http.StatusOK))
		out := b.postForm("/logout", url.Values{"csrf_token": {csrfOf(account)}})
		Expect(out.StatusCode).To(Equal(http.StatusSeeOther))
		Expect(b.get("/account").StatusCode).To(Equal(http.StatusSeeOther))
	})
})
