package kubelogin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// callbackPath is the path of the loopback redirect URI (registered as http://127.0.0.1/callback;
// the provider accepts any port of a loopback URI, RFC 8252 section 7.3).
const callbackPath = "/callback"

// callback is the one answer the loopback server takes from the browser: a code, or why there is
// none. done carries the sign-in's outcome back, for the page the browser shows.
type callback struct {
	code string
	err  error
	done chan error
}

// signIn runs the authorization code flow with PKCE (S256), state and nonce through the browser
// and a loopback redirect on o.ListenAddress.
func (p *provider) signIn(ctx context.Context, o Options) (entry, Credential, error) {
	ln, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return entry{}, Credential{}, fmt.Errorf("listening for the browser's redirect: %w", err)
	}
	host, _, _ := net.SplitHostPort(o.ListenAddress) // withDefaults checked it
	redirectURL := "http://" + net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)) + callbackPath
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	cfg := p.config(o, redirectURL)
	params := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}
	if o.Organization != "" {
		params = append(params, oauth2.SetAuthURLParam("organization", o.Organization))
	}
	if o.LoginHint != "" {
		params = append(params, oauth2.SetAuthURLParam("login_hint", o.LoginHint))
	}
	authURL := cfg.AuthCodeURL(state, params...)

	callbacks := make(chan callback, 1)
	stopped := make(chan struct{})
	srv := &http.Server{Handler: callbackHandler(p.issuer, state, callbacks, stopped), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown) // waits for the browser's page to be written
	}()
	defer close(stopped)

	o.say("Open this URL to sign in: %s\n", authURL)
	browser := make(chan error, 1)
	if o.OpenBrowser != nil {
		go func() { browser <- o.OpenBrowser(authURL) }()
	}
	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	var cb callback
	for cb.done == nil {
		select {
		case cb = <-callbacks:
		case err := <-browser:
			if err != nil {
				o.say("The browser could not be opened (%v); open the URL above yourself.\n", err)
			}
		case <-timeout.C:
			return entry{}, Credential{}, fmt.Errorf("no sign-in within %s: the browser did not come back to %s", o.Timeout, redirectURL)
		case <-ctx.Done():
			return entry{}, Credential{}, ctx.Err()
		}
	}
	e, cred, err := p.finishSignIn(ctx, o, cfg, cb, verifier, nonce)
	cb.done <- err
	return e, cred, err
}

// finishSignIn exchanges the callback's code and checks the ID token.
func (p *provider) finishSignIn(ctx context.Context, o Options, cfg *oauth2.Config, cb callback, verifier, nonce string) (entry, Credential, error) {
	if cb.err != nil {
		return entry{}, Credential{}, cb.err
	}
	t, err := cfg.Exchange(ctx, cb.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return entry{}, Credential{}, fmt.Errorf("exchanging the authorization code at %s: %w", p.endpoint.TokenURL, describeTokenError(err))
	}
	raw, err := idTokenOf(t)
	if err != nil {
		return entry{}, Credential{}, err
	}
	c, err := p.verify(ctx, raw)
	if err != nil {
		return entry{}, Credential{}, err
	}
	if subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1 {
		return entry{}, Credential{}, errors.New("the ID token's nonce is not the one this sign-in sent: refused")
	}
	return entry{Issuer: o.Issuer, ClientID: o.ClientID, Organization: o.Organization, IDToken: raw, RefreshToken: t.RefreshToken},
		c.credential(raw), nil
}

// callbackHandler serves the redirect URI: it takes one callback, checks its state (and its iss,
// RFC 9207, when the provider sends one), and shows the browser how the sign-in ended.
func callbackHandler(issuer, state string, callbacks chan<- callback, stopped <-chan struct{}) http.Handler {
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+callbackPath, func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if !first {
			writePage(w, http.StatusGone, "This sign-in has already ended", "Run the command again to sign in again.")
			return
		}
		q := r.URL.Query()
		cb := callback{done: make(chan error, 1)}
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			cb.err = errors.New("the browser came back with another state than this sign-in sent: refused (was the URL of another sign-in opened?)")
		case q.Has("iss") && q.Get("iss") != issuer:
			cb.err = fmt.Errorf("the browser came back from issuer %q, not %q: refused", q.Get("iss"), issuer)
		case q.Get("error") != "":
			cb.err = providerRefusal(q)
		case q.Get("code") == "":
			cb.err = errors.New("the browser came back without an authorization code")
		default:
			cb.code = q.Get("code")
		}
		callbacks <- cb // the only send: once
		var err error
		select {
		case err = <-cb.done:
		case <-stopped:
			err = errors.New("the sign-in was abandoned")
		case <-r.Context().Done():
			return
		}
		if err != nil {
			writePage(w, http.StatusBadRequest, "Sign-in failed", err.Error())
			return
		}
		writePage(w, http.StatusOK, "Signed in; you can close this tab", "Return to your terminal.")
	})
	return mux
}

// providerRefusal is the error of a redirect with error and error_description (RFC 6749 section
// 4.1.2.1).
func providerRefusal(q url.Values) error {
	if d := q.Get("error_description"); d != "" {
		return fmt.Errorf("sign-in refused by the provider: %s: %s", q.Get("error"), d)
	}
	return fmt.Errorf("sign-in refused by the provider: %s", q.Get("error"))
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// writePage answers the browser with a small page of its own: no script, no other site's assets,
// no referrer (the URL held the code).
func writePage(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = page.Execute(w, struct{ Title, Text string }{title, text})
}

// randomString is 256 random bits, base64url: a state or a nonce.
func randomString() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
