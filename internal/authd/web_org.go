package authd

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// The pages of an organization: a tab each for members, projects, API keys and the audit log,
// and the forms that change them.

// orgData is an organization page's content.
type orgData struct {
	Project  string // the project selector's choice; "" shows everything
	Projects []projectView
	Members  []memberView
	Keys     []apiKeyView
	Audit    []auditRecord
	Next     string // the audit log's next page
	Issued   *apiKeyView
	Invited  *memberView
}

// orgPage renders one tab of an organization.
func (s *Server) orgPage(tab string) http.HandlerFunc {
	return s.inSession(func(w http.ResponseWriter, r *http.Request, ws webSession) {
		s.renderOrg(w, r, ws, tab, http.StatusOK, orgData{}, nil)
	})
}

func (s *Server) renderOrg(w http.ResponseWriter, r *http.Request, ws webSession, tab string, status int, data orgData, failure error) {
	v, all, err := s.baseView(w, r, ws, r.PathValue("org"))
	v.Org, v.Tab = r.PathValue("org"), tab
	var c orgCaller
	if err == nil {
		c, err = s.callerFrom(ws.User, all, v.Org, ws.MFA)
	}
	if err == nil {
		v.Manage = c.canManage()
		data.Project = r.URL.Query().Get("project")
		data.Projects, err = s.listProjects(r.Context(), c)
	}
	if err == nil {
		switch tab {
		case "members":
			data.Members, err = s.listMembers(r.Context(), c)
			data.Members = filterByProject(data.Members, data.Project, func(m memberView) string { return m.Project })
		case "apikeys":
			data.Keys, err = s.listAPIKeys(r.Context(), c)
			data.Keys = filterByProject(data.Keys, data.Project, func(k apiKeyView) string { return k.Project })
		case "audit":
			data.Audit, data.Next, err = s.auditFromRequest(r, c)
		}
	}
	v.Data = data
	if err == nil {
		err = failure
	}
	if err != nil {
		s.renderFailure(w, r, tab, v, err)
		return
	}
	s.render(w, status, tab, v)
}

func filterByProject[T any](items []T, project string, of func(T) string) []T {
	if project == "" {
		return items
	}
	var kept []T
	for _, item := range items {
		if of(item) == project {
			kept = append(kept, item)
		}
	}
	return kept
}

// orgAction runs a form of an organization's tab: on success act redirects or renders itself;
// on failure the tab is shown again with the refusal.
func (s *Server) orgAction(tab string, act func(r *http.Request, c orgCaller) (orgData, string, error)) http.HandlerFunc {
	return s.inSession(func(w http.ResponseWriter, r *http.Request, ws webSession) {
		c, err := s.callerIn(r.Context(), ws.User, r.PathValue("org"), ws.MFA)
		var data orgData
		var done string
		if err == nil {
			data, done, err = act(r, c)
		}
		if err != nil || data.Issued != nil || data.Invited != nil {
			status := http.StatusOK
			var p *problem
			if errors.As(err, &p) {
				status = p.Status
			}
			s.renderOrg(w, r, ws, tab, status, data, err)
			return
		}
		s.site.Flash(w, done)
		http.Redirect(w, r, "/orgs/"+url.PathEscape(c.org.OrgName)+"/"+tab, http.StatusSeeOther)
	})
}

func (s *Server) createProjectSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := projectRequest{Name: r.PostFormValue("name"), DisplayName: r.PostFormValue("displayName")}
	_, err := s.createProject(r.Context(), c, req)
	return orgData{}, "Project " + req.Name + " created.", err
}

func (s *Server) deleteProjectSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.Project{}, r.PathValue("name"))
	return orgData{}, "Project " + r.PathValue("name") + " deleted.", err
}

func (s *Server) inviteMemberSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := memberRequest{Email: r.PostFormValue("email"), Role: r.PostFormValue("role"), Project: r.PostFormValue("project")}
	m, err := s.inviteMember(r.Context(), c, req)
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Invited: &m}, "", nil
}

func (s *Server) memberRoleSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := roleRequest{Role: r.PostFormValue("role")}
	m, err := s.setMemberRole(r.Context(), c, r.PathValue("name"), req)
	return orgData{}, m.Email + " is now " + req.Role + ".", err
}

func (s *Server) removeMemberSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.Membership{}, r.PathValue("name"))
	return orgData{}, "Membership " + r.PathValue("name") + " removed.", err
}

func (s *Server) createKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := apiKeyRequest{Name: r.PostFormValue("name"), Role: r.PostFormValue("role"), Project: r.PostFormValue("project")}
	if days := r.PostFormValue("expiresInDays"); days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 365 {
			return orgData{}, "", badRequest("expiresInDays", "must be a number of days from 1 to 365")
		}
		at := time.Now().Add(time.Duration(n) * 24 * time.Hour).UTC().Truncate(time.Second)
		req.ExpiresAt = &at
	}
	k, err := s.createAPIKey(r.Context(), c, req)
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Issued: &k}, "", nil
}

func (s *Server) rotateKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	k, err := s.rotateAPIKey(r.Context(), c, r.PathValue("name"))
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Issued: &k}, "", nil
}

func (s *Server) deleteKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.APIKey{}, r.PathValue("name"))
	return orgData{}, "API key " + r.PathValue("name") + " deleted.", err
}
