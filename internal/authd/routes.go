package authd

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(pattern, h))
	}
	s.jsonRoutes(route)
	s.routeWeb(mux, route)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.ready)
	return mux
}

// jsonRoutes are the endpoints that openapi.json describes.
func (s *Server) jsonRoutes(route func(pattern string, h http.HandlerFunc)) {
	// The OAuth2 endpoints take forms (RFC 6749); everything else takes JSON bodies only.
	withJSON := func(pattern string, h http.HandlerFunc) { route(pattern, requireJSON(h)) }
	withJSON("POST /auth/login", s.login)
	withJSON("POST /auth/refresh", s.refresh)
	withJSON("POST /auth/logout", s.logout)
	withJSON("GET /auth/me", s.me)
	withJSON("POST /auth/invitations/accept", s.acceptInvitation)
	withJSON("POST /auth/signup", s.signup)
	withJSON("POST /auth/password/forgot", s.forgotPassword)
	withJSON("POST /auth/password/reset", s.resetPasswordJSON)
	withJSON("POST /auth/email/verify", s.verifyEmailJSON)
	route("POST /oauth2/token", s.token)
	route("GET /oauth2/userinfo", s.userinfo)
	route("POST /oauth2/userinfo", s.userinfo)
	route("POST /oauth2/revoke", s.revoke)
	route("POST /oauth2/introspect", s.introspect)
	route("GET /.well-known/openid-configuration", s.discovery)
	route("GET /.well-known/jwks.json", s.jwks)
	route("GET /openapi.json", serveOpenAPI)
	s.routeAPI(withJSON)
	s.routeAdmin(withJSON)
}

// requireJSON refuses a request body that is not declared application/json with 415: a browser
// sends a cross-site form or text/plain body without asking first, never a JSON one.
func requireJSON(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || media != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
				return
			}
		}
		h(w, r)
	}
}

// instrument counts and times requests, bounds bodies, and turns a panic into a JSON 500.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r.Body = http.MaxBytesReader(rec, r.Body, maxBodyBytes)
		defer func() {
			if p := recover(); p != nil {
				s.log.Error(fmt.Errorf("%v", p), "Handler panic", "route", route)
				writeError(rec, http.StatusInternalServerError, "server_error", "the server failed; try again")
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
			s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h(rec, r)
	})
}

// statusRecorder remembers the status a handler answered, for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// ready is ready when the database answers and a signing key is loaded.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	if set := s.keys.Keys(); set == nil {
		http.Error(w, "no signing keys loaded", http.StatusServiceUnavailable)
		return
	} else if _, ok := set.Signer(time.Now()); !ok {
		http.Error(w, "no signing key", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}
