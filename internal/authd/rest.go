package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// The self-service REST API: /api/v1/organizations/{org}/… and /api/v1/me/…, for people with an
// access token from a login. docs/openapi.json describes it.

func (s *Server) routeAPI(route func(pattern string, h http.HandlerFunc)) {
	org := "/api/v1/organizations/{org}"
	route("GET "+org+"/projects", s.inOrg(func(ctx context.Context, w http.ResponseWriter, _ *http.Request, c orgCaller) error {
		items, err := s.listProjects(ctx, c)
		return answerList(w, items, err)
	}))
	route("POST "+org+"/projects", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		var req projectRequest
		if err := decodeJSON(r, &req); err != nil {
			return badRequest("body", err.Error())
		}
		p, err := s.createProject(ctx, c, req)
		return answer(w, http.StatusCreated, p, err)
	}))
	route("DELETE "+org+"/projects/{name}", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		err := s.deleteObject(ctx, c, &tenancyv1.Project{}, r.PathValue("name"))
		return answerNoContent(w, err)
	}))
	route("GET "+org+"/members", s.inOrg(func(ctx context.Context, w http.ResponseWriter, _ *http.Request, c orgCaller) error {
		items, err := s.listMembers(ctx, c)
		return answerList(w, items, err)
	}))
	route("POST "+org+"/members", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		var req memberRequest
		if err := decodeJSON(r, &req); err != nil {
			return badRequest("body", err.Error())
		}
		m, err := s.inviteMember(ctx, c, req)
		return answer(w, http.StatusCreated, m, err)
	}))
	route("PATCH "+org+"/members/{name}", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		var req roleRequest
		if err := decodeJSON(r, &req); err != nil {
			return badRequest("body", err.Error())
		}
		m, err := s.setMemberRole(ctx, c, r.PathValue("name"), req)
		return answer(w, http.StatusOK, m, err)
	}))
	route("DELETE "+org+"/members/{name}", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		err := s.deleteObject(ctx, c, &tenancyv1.Membership{}, r.PathValue("name"))
		return answerNoContent(w, err)
	}))
	route("GET "+org+"/apikeys", s.inOrg(func(ctx context.Context, w http.ResponseWriter, _ *http.Request, c orgCaller) error {
		items, err := s.listAPIKeys(ctx, c)
		return answerList(w, items, err)
	}))
	route("POST "+org+"/apikeys", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		var req apiKeyRequest
		if err := decodeJSON(r, &req); err != nil {
			return badRequest("body", err.Error())
		}
		k, err := s.createAPIKey(ctx, c, req)
		return answerKey(w, http.StatusCreated, k, err)
	}))
	route("POST "+org+"/apikeys/{name}/rotate", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		k, err := s.rotateAPIKey(ctx, c, r.PathValue("name"))
		return answerKey(w, http.StatusOK, k, err)
	}))
	route("DELETE "+org+"/apikeys/{name}", s.inOrg(func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		err := s.deleteObject(ctx, c, &tenancyv1.APIKey{}, r.PathValue("name"))
		return answerNoContent(w, err)
	}))
	route("GET "+org+"/audit", s.inOrg(func(_ context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		items, next, err := s.auditFromRequest(r, c)
		if err != nil {
			return err
		}
		page := map[string]any{"items": items}
		if next != "" {
			page["next"] = next
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	}))

	route("GET /api/v1/me/sessions", s.asUser(func(ctx context.Context, w http.ResponseWriter, _ *http.Request, u user, current string) error {
		items, err := s.store.sessions(ctx, u.ID, current)
		return answerList(w, items, err)
	}))
	route("DELETE /api/v1/me/sessions/{id}", s.asUser(func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
		return s.endUserSessions(w, r, u, r.PathValue("id"), "")
	}))
	route("DELETE /api/v1/me/sessions", s.asUser(func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, current string) error {
		return s.endUserSessions(w, r, u, "", current)
	}))
	route("PUT /api/v1/me/password", s.asUser(func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, current string) error {
		var req passwordRequest
		if err := decodeJSON(r, &req); err != nil {
			return badRequest("body", err.Error())
		}
		if err := s.changePassword(w, r, u, req, current); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
}

// asUser authenticates a person by their access token (person). API keys have no Kubernetes
// identity to act as, so they are refused.
func (s *Server) asUser(h func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, session string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, claims, err := s.person(w, r)
		if err == nil {
			err = h(withClaims(r.Context(), claims), w, r, u, claims.SessionID)
		}
		s.answerError(w, r, err)
	}
}

// inOrg is asUser for the organization named in the path. The token must be one for that
// organization as a whole: a token for another organization, or narrowed to a project, does not
// carry the caller's authority over this one.
func (s *Server) inOrg(h func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error) http.HandlerFunc {
	return s.asUser(func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
		c, err := s.callerIn(ctx, u, r.PathValue("org"))
		if err != nil {
			return err
		}
		if claims := claimsOf(ctx); claims.Org != c.org.OrgID || claims.Project != "" {
			return &problem{Status: http.StatusForbidden, Code: "forbidden", Message: fmt.Sprintf(
				"the access token is not for the organization %s as a whole: log in (or refresh) with \"organization\": %q and no project",
				c.org.OrgName, c.org.OrgName)}
		}
		return h(ctx, w, r, c)
	})
}

type claimsKey struct{}

func withClaims(ctx context.Context, claims *tenancy.Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, claims)
}

func claimsOf(ctx context.Context) *tenancy.Claims {
	claims, _ := ctx.Value(claimsKey{}).(*tenancy.Claims)
	return claims
}

// answerError answers err, when there is one: a problem with its own status, a key the
// operator has not issued yet, or a failure.
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, err error) {
	var p *problem
	switch {
	case err == nil:
	case errors.As(err, &p):
		writeJSON(w, p.Status, p)
	default:
		s.failed(w, r, err)
	}
}

func answer(w http.ResponseWriter, status int, v any, err error) error {
	if err == nil {
		writeJSON(w, status, v)
	}
	return err
}

func answerList[T any](w http.ResponseWriter, items []T, err error) error {
	return answer(w, http.StatusOK, map[string]any{"items": items}, err)
}

func answerNoContent(w http.ResponseWriter, err error) error {
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
	}
	return err
}

// answerKey answers an issued key, or 202 when the APIKey exists but its key is not issued yet:
// it then reaches the caller only through the APIKey's Secret.
func answerKey(w http.ResponseWriter, status int, k apiKeyView, err error) error {
	if errors.Is(err, errKeyPending) {
		k.Message = err.Error() + "; read it from the APIKey's Secret once it is Ready"
		writeJSON(w, http.StatusAccepted, k)
		return nil
	}
	return answer(w, status, k, err)
}

// auditFromRequest reads the page of the audit log that r asks for, and the before of the
// following page ("" at the end).
func (s *Server) auditFromRequest(r *http.Request, c orgCaller) ([]auditRecord, string, error) {
	before, limit, err := auditPaging(r)
	if err != nil {
		return nil, "", err
	}
	items, err := s.auditPage(r.Context(), c, before, limit)
	if err != nil || len(items) < limit {
		return items, "", err
	}
	return items, strconv.FormatInt(items[len(items)-1].ID, 10), nil
}

// auditPaging reads ?before= (an audit row id) and ?limit= (1–200, default 50).
func auditPaging(r *http.Request) (before int64, limit int, err error) {
	limit = 50
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 200 {
			return 0, 0, badRequest("limit", "must be a number from 1 to 200")
		}
	}
	if v := r.URL.Query().Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 1 {
			return 0, 0, badRequest("before", "must be the id of an audit row (the next value of the previous page)")
		}
	}
	return before, limit, nil
}

// endUserSessions ends one of the user's sessions (family) or all but keep, for the API.
func (s *Server) endUserSessions(w http.ResponseWriter, r *http.Request, u user, family, keep string) error {
	ended, err := s.endSessionsOf(r, u, family, keep)
	if err != nil {
		return err
	}
	if family != "" && ended == 0 {
		return notFound("no live session " + family + " of " + u.Email)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endSessionsOf ends the user's live session family, or all but keep, audits each, and says
// how many it ended.
func (s *Server) endSessionsOf(r *http.Request, u user, family, keep string) (int, error) {
	ended, err := s.store.endSessions(r.Context(), u.ID, family, keep)
	for _, id := range ended {
		s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "session.ended", Target: "session/" + id})
	}
	return len(ended), err
}

type passwordRequest struct {
	CurrentPassword string `json:"currentPassword"`
	NewPassword     string `json:"newPassword"`
}

// changePassword sets a new password once the current one is proven, and ends the user's other
// sessions: whoever knew the old password is logged out.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, u user, req passwordRequest, keep string) error {
	ctx := r.Context()
	if err := checkNewPassword(req.NewPassword); err != nil {
		return badRequest("newPassword", strings.TrimPrefix(err.Error(), "password: "))
	}
	if _, err := s.checkPassword(w, r, u.Email, req.CurrentPassword); err != nil {
		var p *problem
		if errors.As(err, &p) && p.Code == "invalid_credentials" {
			return &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: "currentPassword: the password is wrong",
				Fields: []fieldProblem{{Field: "currentPassword", Type: "FieldValueInvalid", Message: "the password is wrong"}}}
		}
		return err
	}
	hash, err := s.hashPassword(req.NewPassword)
	if err != nil {
		return err
	}
	if err := s.store.setPassword(ctx, u.ID, hash); err != nil {
		return err
	}
	ended, err := s.store.endSessions(ctx, u.ID, "", keep)
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "password.changed", Target: "user/" + u.Email,
		Details: map[string]any{"sessions_ended": len(ended)}})
	return err
}
