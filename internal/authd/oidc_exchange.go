package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// Token exchange (RFC 8693), for two uses:
//   - delegation: a service (an OAuthClient with the token-exchange grant) trades a person's
//     access token for one with a narrower audience, project or scope, and an act claim naming
//     the service;
//   - impersonation: support staff, a platform admin proven by a Kubernetes token, act as a
//     person for at most 15 minutes, with a reason, an audit row and a mail to the
//     organization's Owners.

// Token types of the exchange.
const (
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// tokenTypeEmail names a person by their address: the subject of an impersonation, who gives
	// no token of their own.
	tokenTypeEmail = "urn:tenancy.dev:params:oauth:token-type:email"
	// tokenTypeKubernetes is a Kubernetes bearer token, checked with a TokenReview: the actor of
	// an impersonation.
	tokenTypeKubernetes = "urn:tenancy.dev:params:oauth:token-type:kubernetes"
)

// impersonationLifetime bounds an impersonation's token.
const impersonationLifetime = 15 * time.Minute

// refuseExchange is an RFC 6749 error of the exchange, answered with 400.
func refuseExchange(code, format string, args ...any) *problem {
	return &problem{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// tokenExchange answers grant_type=urn:ietf:params:oauth:grant-type:token-exchange.
func (s *Server) tokenExchange(w http.ResponseWriter, r *http.Request) {
	client, err := s.authenticateClient(r)
	if errors.Is(err, errInvalidClient) {
		invalidClient(w, r)
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	resp, err := s.exchange(r, client)
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) exchange(r *http.Request, client oauthClient) (map[string]any, error) {
	form := r.PostForm
	switch {
	case client.Public:
		return nil, refuseExchange("unauthorized_client", "a public client cannot exchange tokens")
	case !client.allows(grantTokenExchange):
		return nil, refuseExchange("unauthorized_client", "this client may not use the token-exchange grant (spec.grantTypes)")
	case form.Get("requested_token_type") != "" && form.Get("requested_token_type") != tokenTypeAccessToken:
		return nil, refuseExchange("invalid_request", "requested_token_type must be %s", tokenTypeAccessToken)
	case form.Get("subject_token") == "":
		return nil, refuseExchange("invalid_request", "subject_token is required")
	}
	switch form.Get("subject_token_type") {
	case tokenTypeAccessToken:
		return s.delegate(r, client)
	case tokenTypeEmail:
		return s.impersonate(r, client)
	default:
		return nil, refuseExchange("invalid_request", "subject_token_type must be %s (delegation) or %s (impersonation)",
			tokenTypeAccessToken, tokenTypeEmail)
	}
}

// delegate narrows a person's access token for a service.
func (s *Server) delegate(r *http.Request, client oauthClient) (map[string]any, error) {
	form := r.PostForm
	if form.Has("actor_token") {
		return nil, refuseExchange("invalid_request", "a delegation takes no actor_token: the authenticated client is the actor")
	}
	subject, err := s.verifier.Verify(r.Context(), form.Get("subject_token"))
	if err != nil || subject.IsAPIKey() || subject.Org == "" {
		return nil, refuseExchange("invalid_grant", "subject_token is not a valid access token of a person in an organization")
	}
	if subject.Act != nil {
		return nil, refuseExchange("invalid_grant", "subject_token was already exchanged (it has an act claim); exchange the person's own token")
	}
	if client.OrgID != nil && *client.OrgID != subject.Org {
		return nil, refuseExchange("invalid_grant", "this client does not serve the subject token's organization")
	}
	live, err := s.principalLive(r, subject)
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, refuseExchange("invalid_grant", "the person no longer holds the subject token's role")
	}
	left := time.Until(subject.ExpiresAt.Time).Truncate(time.Second)
	if left < time.Second { // the verifier's leeway lets a just-expired token through
		return nil, refuseExchange("invalid_grant", "subject_token has expired")
	}
	if client.AccessTTL > 0 {
		left = min(left, client.AccessTTL)
	}
	g := grant{Subject: subject.Subject, ClientID: client.ClientID, UserID: subject.Subject, OrgID: subject.Org, Project: subject.Project,
		Role: subject.Role, Session: subject.SessionID, MFA: subject.HasSecondFactor(), Act: &tenancy.Actor{Subject: client.ClientID},
		TTL: left}
	if audience := form.Get("audience"); audience != "" {
		if err := s.checkAudience(r.Context(), audience, subject.Org); err != nil {
			return nil, err
		}
		g.Audience = audience
	}
	if project := form.Get("project"); project != "" {
		if err := s.narrowToProject(r.Context(), &g, project); err != nil {
			return nil, err
		}
	}
	if scope := form.Get("scope"); scope != "" {
		held := strings.Fields(subject.Scope)
		g.Permissions = []string{}
		for _, sc := range strings.Fields(scope) {
			if !slices.Contains(held, sc) {
				return nil, refuseExchange("invalid_scope", "scope %s is not in the subject token's scope", sc)
			}
			g.Permissions = append(g.Permissions, sc)
		}
	}
	token, expiresIn, err := s.tokens.issue(r.Context(), g)
	if err != nil {
		return nil, err
	}
	s.metrics.tokens.WithLabelValues("token_exchange").Inc()
	s.audit(r, auditEntry{Actor: "oauthclient:" + client.ClientID, Action: "token.exchanged", Target: "user/" + subject.Subject, OrgID: &subject.Org,
		Details: map[string]any{"audience": g.Audience, "project": g.Project, "role": g.Role}})
	return exchangeAnswer(token, expiresIn, g), nil
}

// checkAudience accepts authd's own audience or the client_id of a client that serves orgID.
func (s *Server) checkAudience(ctx context.Context, audience, orgID string) error {
	if audience == s.cfg.Audience {
		return nil
	}
	target, err := s.store.oauthClient(ctx, audience)
	if errors.Is(err, errUnknownClient) || (err == nil && target.OrgID != nil && *target.OrgID != orgID) {
		return refuseExchange("invalid_target", "audience %s is neither %s nor an OAuthClient serving the organization", audience, s.cfg.Audience)
	}
	return err
}

// narrowToProject scopes g to project (a name or id) of its organization: with the person's
// project role there, or their organization-wide role, never above the subject token's.
func (s *Server) narrowToProject(ctx context.Context, g *grant, project string) error {
	projectID, found, err := s.store.projectOf(ctx, g.OrgID, project)
	if err != nil {
		return err
	}
	if !found || (g.Project != "" && g.Project != projectID) {
		return refuseExchange("invalid_target", "project %s is not a project of the subject token's organization and scope", project)
	}
	all, err := s.store.memberships(ctx, g.UserID)
	if err != nil {
		return err
	}
	role := ""
	for _, m := range all {
		if m.State == string(tenancyv1.MembershipActive) && m.OrgID == g.OrgID && (m.ProjectID == nil || *m.ProjectID == projectID) &&
			tenancyv1.Role(m.Role).Rank() > tenancyv1.Role(role).Rank() {
			role = m.Role
		}
	}
	if role == "" {
		return refuseExchange("invalid_target", "the person has no role in project %s", project)
	}
	g.Project = projectID
	if tenancyv1.Role(role).Rank() < tenancyv1.Role(g.Role).Rank() {
		g.Role = role
	}
	return nil
}

// impersonate issues a platform admin a token to act as a person (support).
func (s *Server) impersonate(r *http.Request, client oauthClient) (map[string]any, error) {
	form := r.PostForm
	reason, orgName := strings.TrimSpace(form.Get("reason")), form.Get("organization")
	switch {
	case client.OrgID != nil:
		return nil, refuseExchange("unauthorized_client", "impersonation needs a platform-wide client (an OAuthClient in the operator's namespace)")
	case form.Get("actor_token_type") != tokenTypeKubernetes || form.Get("actor_token") == "":
		return nil, refuseExchange("invalid_request", "impersonation needs actor_token, a Kubernetes token of a platform admin, with actor_token_type %s", tokenTypeKubernetes)
	case reason == "" || len(reason) > 500:
		return nil, refuseExchange("invalid_request", "reason is required (at most 500 characters): the organization's Owners are told it")
	case orgName == "":
		return nil, refuseExchange("invalid_request", "organization is required: an impersonation acts in one organization")
	}
	admin, authenticated, isAdmin, err := s.reviewKubernetesToken(r.Context(), form.Get("actor_token"))
	switch {
	case err != nil:
		return nil, err
	case !authenticated:
		return nil, refuseExchange("invalid_grant", "actor_token is not a valid Kubernetes token")
	case !isAdmin:
		return nil, &problem{Status: http.StatusForbidden, Code: "access_denied",
			Message: admin + " is not a platform admin (--platform-admin-users, --platform-admin-groups)"}
	}
	u, found, err := s.store.userByEmail(r.Context(), form.Get("subject_token"))
	if err != nil {
		return nil, err
	}
	if !found || u.Disabled {
		return nil, refuseExchange("invalid_grant", "no enabled account has that address")
	}
	all, err := s.store.memberships(r.Context(), u.ID)
	if err != nil {
		return nil, err
	}
	a, err := chooseAccess(all, orgName, form.Get("project"))
	if errors.Is(err, errNoAccess) {
		return nil, refuseExchange("invalid_grant", "%s", err.Error())
	}
	if err != nil {
		return nil, err
	}
	g := grant{Subject: u.ID, ClientID: client.ClientID, UserID: u.ID, OrgID: *a.OrgID, Role: a.Role, TTL: impersonationLifetime,
		Act: &tenancy.Actor{Subject: admin, Impersonation: true, Reason: reason}}
	if a.ProjectID != nil {
		g.Project = *a.ProjectID
	}
	token, expiresIn, err := s.tokens.issue(r.Context(), g)
	if err != nil {
		return nil, err
	}
	s.metrics.tokens.WithLabelValues("impersonation").Inc()
	s.audit(r, auditEntry{Actor: admin, Action: "token.impersonated", Target: "user/" + u.Email, OrgID: a.OrgID,
		Details: map[string]any{"reason": reason, "role": a.Role, "client_id": client.ClientID, "expires_in": expiresIn}})
	s.tellOwners(r, a, mail.Data{At: time.Now(), ExpiresAt: time.Now().Add(time.Duration(expiresIn) * time.Second),
		Actor: admin, Person: u.Email, Reason: reason, Organization: a.OrgName})
	return exchangeAnswer(token, expiresIn, g), nil
}

// tellOwners mails the organization's Owners of an impersonation; a failure is logged, the token
// stands (its audit row is the record).
func (s *Server) tellOwners(r *http.Request, a access, data mail.Data) {
	owners, err := s.store.organizationOwners(r.Context(), *a.OrgID)
	for _, o := range owners {
		if err == nil {
			err = s.notify(r.Context(), s.store.pool, o, mail.Impersonation, data)
		}
	}
	if err != nil {
		s.log.Error(err, "Queueing the notice of an impersonation", "organization", a.OrgName)
		return
	}
	s.pokeMail()
}

func exchangeAnswer(token string, expiresIn int, g grant) map[string]any {
	return map[string]any{"access_token": token, "issued_token_type": tokenTypeAccessToken, "token_type": "Bearer",
		"expires_in": expiresIn, "scope": strings.Join(permissionsOf(g), " ")}
}
