package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// The self-service REST API: /api/v1/organizations/{org}/… and /api/v1/me/…, for people with an
// access token from a login. docs/openapi.json describes it.

func (s *Server) routeAPI(route func(pattern string, h http.HandlerFunc)) {
	org := "/api/v1/organizations/{org}"
	route("GET "+org+"/projects", s.inOrg(answerItems(s.listProjects)))
	route("POST "+org+"/projects", s.inOrg(answerJSON(http.StatusCreated, withBody(s.createProject))))
	route("DELETE "+org+"/projects/{name}", s.inOrg(deleteNamed[tenancyv1.Project](s)))
	route("GET "+org+"/members", s.inOrg(answerItems(s.listMembers)))
	route("POST "+org+"/members", s.inOrg(answerJSON(http.StatusCreated, withBody(s.inviteMember))))
	route("PATCH "+org+"/members/{name}", s.inOrg(answerJSON(http.StatusOK, withNameAndBody(s.setMemberRole))))
	route("DELETE "+org+"/members/{name}", s.inOrg(deleteNamed[tenancyv1.Membership](s)))
	route("GET "+org+"/apikeys", s.inOrg(answerItems(s.listAPIKeys)))
	route("POST "+org+"/apikeys", s.inOrg(answerKey(http.StatusCreated, withBody(s.createAPIKey))))
	route("POST "+org+"/apikeys/{name}/rotate", s.inOrg(answerKey(http.StatusOK, withName(s.rotateAPIKey))))
	route("DELETE "+org+"/apikeys/{name}", s.inOrg(deleteNamed[tenancyv1.APIKey](s)))
	route("GET "+org+"/audit", s.inOrg(s.answerAuditPage))

	route("GET /api/v1/me/sessions", s.asUser(s.answerOwnSessions))
	route("DELETE /api/v1/me/sessions/{id}", s.asUser(s.endOwnSession))
	route("DELETE /api/v1/me/sessions", s.asUser(s.endOwnOtherSessions))
	route("PUT /api/v1/me/password", s.asUser(s.changeOwnPassword))
	route("POST /api/v1/me/email/verification", s.asUser(s.requestOwnVerification))
	route("POST /api/v1/me/mfa/totp", s.asUser(s.startOwnEnrolment))
	route("POST /api/v1/me/mfa/totp/confirm", s.asUser(s.confirmOwnEnrolment))
	route("DELETE /api/v1/me/mfa/totp", s.asUser(s.disableOwnTOTP))
	route("GET /api/v1/me/export", s.asUser(s.exportOwnAccount))
	route("DELETE /api/v1/me", s.asUser(s.deleteOwnAccountJSON))
}

// userHandler serves a route for user u, whose access token belongs to session; asUser answers
// its error.
type userHandler func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, session string) error

// orgHandler serves a route of one organization for caller c; inOrg answers its error.
type orgHandler func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error

// asUser authenticates a person by their access token (person). API keys have no Kubernetes
// identity to act as, so they are refused.
func (s *Server) asUser(h userHandler) http.HandlerFunc {
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
func (s *Server) inOrg(h orgHandler) http.HandlerFunc {
	return s.asUser(func(ctx context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
		c, err := s.callerIn(ctx, u, r.PathValue("org"), hasSecondFactor(claimsOf(ctx)))
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

// The routes of an organization are built from an operation of selfservice.go (which the web
// pages call too): an orgCall takes the operation's input from the request, an answer helper
// writes its result.

// orgCall runs an operation of an organization with its input read from r.
type orgCall[Resp any] func(ctx context.Context, r *http.Request, c orgCaller) (Resp, error)

// withBody passes op the request's JSON body.
func withBody[Req, Resp any](op func(context.Context, orgCaller, Req) (Resp, error)) orgCall[Resp] {
	return func(ctx context.Context, r *http.Request, c orgCaller) (Resp, error) {
		req, err := bodyOf[Req](r)
		if err != nil {
			var none Resp
			return none, err
		}
		return op(ctx, c, req)
	}
}

// withName passes op the {name} of the path.
func withName[Resp any](op func(context.Context, orgCaller, string) (Resp, error)) orgCall[Resp] {
	return func(ctx context.Context, r *http.Request, c orgCaller) (Resp, error) {
		return op(ctx, c, r.PathValue("name"))
	}
}

// withNameAndBody passes op the {name} of the path and the request's JSON body.
func withNameAndBody[Req, Resp any](op func(context.Context, orgCaller, string, Req) (Resp, error)) orgCall[Resp] {
	return func(ctx context.Context, r *http.Request, c orgCaller) (Resp, error) {
		req, err := bodyOf[Req](r)
		if err != nil {
			var none Resp
			return none, err
		}
		return op(ctx, c, r.PathValue("name"), req)
	}
}

// bodyOf decodes the request's JSON body; one that is not a Req is the caller's problem.
func bodyOf[Req any](r *http.Request) (Req, error) {
	var req Req
	if err := decodeJSON(r, &req); err != nil {
		return req, badRequest("body", err.Error())
	}
	return req, nil
}

// answerJSON answers what call returns with status.
func answerJSON[Resp any](status int, call orgCall[Resp]) orgHandler {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		v, err := call(ctx, r, c)
		if err == nil {
			writeJSON(w, status, v)
		}
		return err
	}
}

// answerItems answers what list returns as {"items": [...]}.
func answerItems[T any](list func(context.Context, orgCaller) ([]T, error)) orgHandler {
	return func(ctx context.Context, w http.ResponseWriter, _ *http.Request, c orgCaller) error {
		items, err := list(ctx, c)
		if err == nil {
			writeItems(w, items)
		}
		return err
	}
}

func writeItems[T any](w http.ResponseWriter, items []T) {
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// answerKey answers an issued key with status, or 202 when the APIKey exists but its key is not
// issued yet: it then reaches the caller only through the APIKey's Secret.
func answerKey(status int, call orgCall[apiKeyView]) orgHandler {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		k, err := call(ctx, r, c)
		switch {
		case errors.Is(err, errKeyPending):
			k.Message = err.Error() + "; read it from the APIKey's Secret once it is Ready"
			writeJSON(w, http.StatusAccepted, k)
			return nil
		case err == nil:
			writeJSON(w, status, k)
		}
		return err
	}
}

// deleteNamed deletes the object of kind T named in the path, and answers 204.
func deleteNamed[T any, PT interface {
	*T
	client.Object
}](s *Server) orgHandler {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
		if err := s.deleteObject(ctx, c, PT(new(T)), r.PathValue("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// answerAuditPage answers a page of the organization's audit log, with the next page's before
// when there may be more.
func (s *Server) answerAuditPage(_ context.Context, w http.ResponseWriter, r *http.Request, c orgCaller) error {
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
}

// answerOwnSessions answers the user's live sessions, marking the current one.
func (s *Server) answerOwnSessions(ctx context.Context, w http.ResponseWriter, _ *http.Request, u user, current string) error {
	items, err := s.store.sessions(ctx, u.ID, current)
	if err == nil {
		writeItems(w, items)
	}
	return err
}

// endOwnSession ends the user's session named in the path.
func (s *Server) endOwnSession(_ context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	family := r.PathValue("id")
	ended, err := s.endSessionsOf(r, u, family, "")
	if err != nil {
		return err
	}
	if ended == 0 {
		return notFound("no live session " + family + " of " + u.Email)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endOwnOtherSessions ends every session of the user but the current one.
func (s *Server) endOwnOtherSessions(_ context.Context, w http.ResponseWriter, r *http.Request, u user, current string) error {
	if _, err := s.endSessionsOf(r, u, "", current); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// changeOwnPassword changes the user's password and ends their other sessions.
func (s *Server) changeOwnPassword(_ context.Context, w http.ResponseWriter, r *http.Request, u user, current string) error {
	req, err := bodyOf[passwordRequest](r)
	if err != nil {
		return err
	}
	if err := s.changePassword(w, r, u, req, current); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
