package authd

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// The /auth/ endpoints: password login, refresh, logout and who the caller is, and the
// sessions and access tokens behind them.

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
	// OTP or RecoveryCode is the second factor of an account with an authenticator.
	OTP          string `json:"otp"`
	RecoveryCode string `json:"recovery_code"`
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
	mfa, err := s.secondFactor(r, u, req.OTP, req.RecoveryCode)
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
	newAddress := s.newSignInAddress(r, u)
	resp, err := s.startSession(r, u, a, mfa)
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	if newAddress {
		s.mailNewSignIn(r, u)
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.audit(r, auditEntry{Actor: email, ActorUserID: &u.ID, Action: "login.succeeded", Target: "user/" + email, OrgID: a.OrgID})
	writeJSON(w, http.StatusOK, resp)
}

// startSession starts a refresh token family for u and issues its first access token; mfa says
// that u gave a second factor. An organization that requires one is refused without it.
func (s *Server) startSession(r *http.Request, u user, a access, mfa bool) (tokenResponse, error) {
	if a.RequireMFA && !mfa {
		return tokenResponse{}, mfaRequired(a.OrgName)
	}
	refresh, family, err := s.store.startSession(r.Context(), u.ID, a.tenantIDs, apiSessionKind, mfa, s.sessionPolicy(), s.clientOf(r))
	if err != nil {
		return tokenResponse{}, err
	}
	return s.userTokens(r, u, a, refresh, family, "login", mfa)
}

// userTokens issues an access token for u with access a in session family, next to refresh.
func (s *Server) userTokens(r *http.Request, u user, a access, refresh, family, grantType string, mfa bool) (tokenResponse, error) {
	g := grant{Subject: u.ID, ClientID: tenancy.SessionClientID, UserID: u.ID, Role: a.Role, Session: family, MFA: mfa}
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
	rot, err := s.store.rotate(r.Context(), req.RefreshToken, s.sessionPolicy(), s.clientOf(r), nil,
		func(ctx context.Context, q querier, userID string, current tenantIDs, mfa bool) (tenantIDs, error) {
			found, ok, err := userByID(ctx, q, userID)
			if err != nil {
				return tenantIDs{}, err
			}
			if !ok || found.Disabled {
				return tenantIDs{}, errInvalidRefresh
			}
			u = found
			memberships, err := memberships(ctx, q, userID)
			if err != nil {
				return tenantIDs{}, err
			}
			org, project := req.Organization, req.Project
			if org == "" && current.OrgID != nil {
				org = *current.OrgID
				if project == "" && current.ProjectID != nil {
					project = *current.ProjectID
				}
			}
			a, err = chooseAccess(memberships, org, project)
			if err == nil && a.RequireMFA && !mfa {
				err = mfaRequired(a.OrgName)
			}
			return a.tenantIDs, err
		})
	var refused *problem
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
	case errors.As(err, &refused):
		return tokenResponse{}, refused.Code, err
	case err != nil:
		return tokenResponse{}, "", err
	}
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "session.refreshed", Target: "session/" + rot.FamilyID, OrgID: a.OrgID})
	resp, err := s.userTokens(r, u, a, rot.Token, rot.FamilyID, "refresh_token", rot.MFA)
	return resp, "", err
}

// refreshFailed answers a failed refresh.
func (s *Server) refreshFailed(w http.ResponseWriter, r *http.Request, code string, err error) {
	switch code {
	case "":
		s.failed(w, r, err)
	case "access_denied", "membership_not_active", "mfa_enrollment_required":
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
	raw, ok := bearerToken(r)
	if !ok {
		return nil, false
	}
	claims, err := s.verifier.Verify(r.Context(), raw)
	return claims, err == nil
}

// bearerToken is the request's Authorization: Bearer credential.
func bearerToken(r *http.Request) (string, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	raw = strings.TrimSpace(raw)
	return raw, ok && raw != ""
}

// person authenticates a person by an access token of authd's own session: API keys are
// refused, and so are the tokens of OAuth clients (an application a person signed in to acts in
// the application, not on the person's account and organization here). The user row must still
// exist and be enabled.
func (s *Server) person(w http.ResponseWriter, r *http.Request) (user, *tenancy.Claims, error) {
	claims, ok := s.bearer(r)
	if !ok || claims.ClientID != tenancy.SessionClientID {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return user{}, nil, &problem{Status: http.StatusUnauthorized, Code: "invalid_token",
			Message: "a valid access token of a person's own session is required (not an API key's, nor an application's)"}
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
	var mfa bool
	if err == nil {
		mfa, err = s.store.hasTOTP(r.Context(), u.ID)
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user": map[string]any{"id": u.ID, "email": u.Email, "email_verified": u.EmailVerified, "display_name": u.DisplayName,
			"mfa_enabled": mfa},
		"organization": claims.Org,
		"memberships":  memberships,
	})
}
