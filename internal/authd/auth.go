package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// tokenResponse is what a login, refresh or accepted invitation answers.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Organization string `json:"organization,omitempty"`
}

type loginRequest struct {
	Email        string `json:"email"`
	Password     string `json:"password"`
	Organization string `json:"organization"`
	Project      string `json:"project"`
}

// throttleAddress takes an attempt for the client address; when it has none left it sets
// Retry-After and returns the refusal.
func (s *Server) throttleAddress(w http.ResponseWriter, r *http.Request) error {
	if ok, wait := s.addresses.allow(s.clientOf(r).Address); !ok {
		return slowDown(w, wait)
	}
	return nil
}

// throttled answers 429 when the client address has no attempt left.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request) bool {
	if err := s.throttleAddress(w, r); err != nil {
		s.answerError(w, r, err)
		return true
	}
	return false
}

// beginPasswordAttempt decides whether a password of account may be tried now (the caller has
// taken the client address's attempt): the account's failures from this address, and from
// everywhere unless the account signed in from this address recently, must not ask for a wait.
// Every attempt it lets through ends with endPasswordAttempt.
func (s *Server) beginPasswordAttempt(w http.ResponseWriter, r *http.Request, account string) error {
	address, now := s.clientOf(r).Address, time.Now()
	if wait := s.pairs.wait(pairKey(account, address), now); wait > 0 {
		return slowDown(w, wait)
	}
	if wait := s.accounts.wait(account, now); wait > 0 {
		familiar, err := s.store.familiarAddress(r.Context(), account, address, s.cfg.Throttle.FamiliarFor)
		if err != nil {
			return err
		}
		if !familiar {
			return slowDown(w, wait)
		}
	}
	return nil
}

// endPasswordAttempt counts a failed attempt, or forgets this address's failures after a
// success (the account's count from everywhere stays, so that the owner signing in does not
// give a guesser fresh attempts).
func (s *Server) endPasswordAttempt(r *http.Request, account string, ok bool) {
	pair, now := pairKey(account, s.clientOf(r).Address), time.Now()
	if ok {
		s.pairs.succeed(pair)
		return
	}
	s.pairs.fail(pair, now)
	s.accounts.fail(account, now)
}

// pairKey is what an account's failures from one address are counted under.
func pairKey(account, address string) string { return account + "\x00" + address }

// slowDown is the refusal of a throttled attempt, with its Retry-After.
func slowDown(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	return &problem{Status: http.StatusTooManyRequests, Code: "slow_down",
		Message: fmt.Sprintf("too many attempts; retry in %d seconds", retryAfterSeconds(wait))}
}

// authenticate checks an email and password. Unknown users, users without a password and
// disabled users cost one argon2id hash too, and get the same answer as a wrong password.
func (s *Server) authenticate(ctx context.Context, email, password string) (user, bool, error) {
	u, found, err := s.store.userByEmail(ctx, email)
	if err != nil {
		return user{}, false, err
	}
	hash := s.dummyHash
	if found && u.PasswordHash != nil && !u.Disabled {
		hash = *u.PasswordHash
	}
	ok, outdated, err := s.verifyPassword(password, hash)
	if err != nil || !ok || hash == s.dummyHash {
		return user{}, false, nil
	}
	if outdated {
		if rehashed, err := s.hashPassword(password); err == nil {
			if err := s.store.setPassword(ctx, u.ID, rehashed); err != nil {
				s.log.Error(err, "Rehashing a password with the current parameters", "user", u.ID)
			}
		}
	}
	return u, true, nil
}

// checkPassword checks a login's email and password for the API and the login page: throttled
// (beginPasswordAttempt; 429 with Retry-After), the same answer for an unknown user and a wrong
// password, failures audited.
func (s *Server) checkPassword(w http.ResponseWriter, r *http.Request, email, password string) (user, error) {
	email = db.NormalizeEmail(email)
	if email == "" || password == "" {
		return user{}, &problem{Status: http.StatusBadRequest, Code: "invalid_request", Message: "email and password are required"}
	}
	err := s.throttleAddress(w, r)
	if err == nil {
		err = s.beginPasswordAttempt(w, r, email)
	}
	if err != nil {
		s.metrics.logins.WithLabelValues("throttled").Inc()
		return user{}, err
	}
	password = truncate(password, maxPasswordLength) // hash the same bounded work; it cannot match
	u, ok, err := s.authenticate(r.Context(), email, password)
	if err != nil {
		return user{}, err
	}
	s.endPasswordAttempt(r, email, ok)
	if !ok {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.audit(r, auditEntry{Actor: email, Action: "login.failed", Target: "user/" + email})
		return user{}, &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: "the email or the password is wrong"}
	}
	return u, nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	u, err := s.checkPassword(w, r, req.Email, req.Password)
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	email := u.Email
	memberships, err := s.store.memberships(r.Context(), u.ID)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	a, err := chooseAccess(memberships, req.Organization, req.Project)
	if errors.Is(err, errNoAccess) {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.audit(r, auditEntry{Actor: email, ActorUserID: &u.ID, Action: "login.failed", Target: "user/" + email,
			Details: map[string]any{"reason": err.Error()}})
		writeError(w, http.StatusForbidden, accessErrorCode(err), err.Error())
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	resp, err := s.startSession(r, u, a)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.audit(r, auditEntry{Actor: email, ActorUserID: &u.ID, Action: "login.succeeded", Target: "user/" + email, OrgID: a.OrgID})
	writeJSON(w, http.StatusOK, resp)
}

// startSession starts a refresh token family for u and issues its first access token.
func (s *Server) startSession(r *http.Request, u user, a access) (tokenResponse, error) {
	refresh, family, err := s.store.startSession(r.Context(), u.ID, a.scope, apiSessionKind, s.sessionPolicy(), s.clientOf(r))
	if err != nil {
		return tokenResponse{}, err
	}
	return s.userTokens(r, u, a, refresh, family, "login")
}

// userTokens issues an access token for u with access a in session family, next to refresh.
func (s *Server) userTokens(r *http.Request, u user, a access, refresh, family, grantType string) (tokenResponse, error) {
	g := grant{Subject: u.ID, ClientID: tenancy.SessionClientID, UserID: u.ID, Role: a.Role, Session: family}
	if a.OrgID != nil {
		g.OrgID = *a.OrgID
	}
	if a.ProjectID != nil {
		g.Project = *a.ProjectID
	}
	access, expiresIn, err := s.tokens.issue(r.Context(), g)
	if err != nil {
		return tokenResponse{}, err
	}
	s.metrics.tokens.WithLabelValues(grantType).Inc()
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "token.issued", Target: "user/" + u.Email, OrgID: a.OrgID,
		Details: map[string]any{"grant": grantType, "role": a.Role}})
	return tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn, RefreshToken: refresh, Organization: a.OrgName}, nil
}

func (s *Server) sessionPolicy() sessionPolicy {
	return sessionPolicy{TTL: s.cfg.RefreshTokenTTL, Lifetime: s.cfg.SessionLifetime, ReuseInterval: s.cfg.RefreshReuseInterval}
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
	Organization string `json:"organization"`
	Project      string `json:"project"`
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	resp, code, err := s.refreshTokens(r, req)
	if err != nil {
		s.refreshFailed(w, r, code, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// refreshTokens rotates a refresh token and issues the pair, for /auth/refresh and the OAuth2
// refresh_token grant; on failure it returns the error code to answer.
func (s *Server) refreshTokens(r *http.Request, req refreshRequest) (tokenResponse, string, error) {
	if req.RefreshToken == "" || len(req.RefreshToken) > 128 {
		return tokenResponse{}, "invalid_request", errors.New("refresh_token is required")
	}
	var u user
	var a access
	rot, err := s.store.rotate(r.Context(), req.RefreshToken, s.sessionPolicy(), s.clientOf(r),
		func(ctx context.Context, q querier, userID string, current scope) (scope, error) {
			found, ok, err := userByID(ctx, q, userID)
			if err != nil {
				return scope{}, err
			}
			if !ok || found.Disabled {
				return scope{}, errInvalidRefresh
			}
			u = found
			memberships, err := memberships(ctx, q, userID)
			if err != nil {
				return scope{}, err
			}
			org, project := req.Organization, req.Project
			if org == "" && current.OrgID != nil {
				org = *current.OrgID
				if project == "" && current.ProjectID != nil {
					project = *current.ProjectID
				}
			}
			a, err = chooseAccess(memberships, org, project)
			return a.scope, err
		})
	switch {
	case errors.Is(err, errRefreshReuse):
		s.metrics.reuseDetected.Inc()
		s.audit(r, auditEntry{Actor: "user:" + rot.UserID, ActorUserID: &rot.UserID, Action: "refresh.reuse_detected",
			Target: "session/" + rot.FamilyID, Details: map[string]any{"client_address": s.clientOf(r).Address}})
		return tokenResponse{}, "invalid_grant", err
	case errors.Is(err, errInvalidRefresh):
		return tokenResponse{}, "invalid_grant", err
	case errors.Is(err, errNoAccess):
		return tokenResponse{}, accessErrorCode(err), err
	case err != nil:
		return tokenResponse{}, "", err
	}
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "session.refreshed", Target: "session/" + rot.FamilyID, OrgID: a.OrgID})
	resp, err := s.userTokens(r, u, a, rot.Token, rot.FamilyID, "refresh_token")
	return resp, "", err
}

// accessErrorCode is the error code of a refused choice of organization or project.
func accessErrorCode(err error) string {
	if errors.Is(err, errMembershipNotActive) {
		return "membership_not_active"
	}
	return "access_denied"
}

// refreshFailed answers a failed refresh.
func (s *Server) refreshFailed(w http.ResponseWriter, r *http.Request, code string, err error) {
	switch code {
	case "":
		s.failed(w, r, err)
	case "access_denied", "membership_not_active":
		writeError(w, http.StatusForbidden, code, err.Error())
	default:
		writeError(w, http.StatusBadRequest, code, err.Error())
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(r, &req); err != nil || req.RefreshToken == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	if err := s.endSession(r, req.RefreshToken, "logout"); err != nil {
		s.failed(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// endSession revokes the session of a refresh token (unknown tokens are ignored, as RFC 7009
// asks) and audits it.
func (s *Server) endSession(r *http.Request, refreshToken, action string) error {
	userID, orgID, err := s.store.endSession(r.Context(), refreshToken)
	if err != nil || userID == "" {
		return err
	}
	s.audit(r, auditEntry{Actor: "user:" + userID, ActorUserID: &userID, Action: action, Target: "user/" + userID, OrgID: orgID})
	return nil
}

// bearer verifies the request's access token.
func (s *Server) bearer(r *http.Request) (*tenancy.Claims, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, false
	}
	claims, err := s.verifier.Verify(r.Context(), strings.TrimSpace(raw))
	return claims, err == nil
}

// person authenticates a person by their access token: API keys are refused, and the user row
// must still exist and be enabled.
func (s *Server) person(w http.ResponseWriter, r *http.Request) (user, *tenancy.Claims, error) {
	claims, ok := s.bearer(r)
	if !ok || claims.IsAPIKey() {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return user{}, nil, &problem{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "a valid access token of a person is required"}
	}
	u, found, err := s.store.userByID(r.Context(), claims.Subject)
	if err == nil && (!found || u.Disabled) {
		err = &problem{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "the user no longer exists or is disabled"}
	}
	return u, claims, err
}

// me answers who the token's user is and where they belong; tokens without an organization are
// accepted here (and only here).
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	u, claims, err := s.person(w, r)
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	memberships, err := s.store.memberships(r.Context(), u.ID)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user":         map[string]any{"id": u.ID, "email": u.Email, "email_verified": u.EmailVerified, "display_name": u.DisplayName},
		"organization": claims.Org,
		"memberships":  memberships,
	})
}

// audit queues entries for the request's audit rows, written in batches (auditWriter). When the
// queue is full (the database has been slow for a while) the row is logged and dropped rather
// than stalling the request.
func (s *Server) audit(r *http.Request, entries ...auditEntry) {
	for _, e := range entries {
		e.RequestID = r.Header.Get("X-Request-Id")
		select {
		case s.auditLog.entries <- e:
		default:
			s.metrics.auditDropped.Inc()
			s.log.Error(errors.New("audit queue full"), "Dropping an audit row", "action", e.Action, "target", e.Target)
		}
	}
}

// verifyPassword and hashPassword run argon2id at most once per core at a time: more at once
// only adds memory (19 MiB each) and garbage collection, not throughput.
func (s *Server) verifyPassword(password, hash string) (ok, outdated bool, err error) {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return VerifyPassword(password, hash, s.cfg.Passwords)
}

func (s *Server) hashPassword(password string) (string, error) {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return HashPassword(password, s.cfg.Passwords)
}
