package authd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// The self-service operations behind the REST API and the web pages. Reads of the caller's own
// identity come from the database; everything about an organization's Projects, Memberships and
// APIKeys goes to the Kubernetes API as the caller (Kubernetes.AsCaller), so that RBAC and the
// admission webhooks decide exactly as they do for that person's kubectl.

// orgCaller is a user acting in one of their organizations.
type orgCaller struct {
	user      user
	org       membership     // the organization, with the caller's organization-wide membership if any
	role      tenancyv1.Role // organization-wide; "" for a member of projects only
	namespace string
	username  string // the caller's Kubernetes username
}

// as puts the caller into ctx for Kubernetes.AsCaller.
func (c orgCaller) as(ctx context.Context) context.Context { return withCaller(ctx, c.username) }

// canManage reports whether the caller administers the whole organization: what the
// organization's RBAC lets write Projects, Memberships and APIKeys.
func (c orgCaller) canManage() bool { return c.role.AtLeast(tenancyv1.RoleAdmin) }

// callerIn resolves a user's access to organization orgName from their live memberships: an
// Active one there (organization-wide or in a project) is required; the answer does not tell an
// unknown organization from one the user does not belong to. mfa says that the caller's session
// began with a second factor, which an organization with requireMFA needs.
func (s *Server) callerIn(ctx context.Context, u user, orgName string, mfa bool) (orgCaller, error) {
	all, err := s.store.memberships(ctx, u.ID)
	if err != nil {
		return orgCaller{}, err
	}
	return s.callerFrom(u, all, orgName, mfa)
}

// callerFrom is callerIn with the user's memberships already read.
func (s *Server) callerFrom(u user, all []membership, orgName string, mfa bool) (orgCaller, error) {
	c := orgCaller{user: u}
	requireMFA := false
	for _, m := range all {
		if m.OrgName != orgName || m.State != string(tenancyv1.MembershipActive) {
			continue
		}
		c.namespace = m.namespace
		c.org.OrgID, c.org.OrgName = m.OrgID, m.OrgName
		requireMFA = m.requireMFA
		if m.ProjectName == nil {
			c.role = tenancyv1.Role(m.Role)
		}
	}
	if c.namespace == "" {
		return orgCaller{}, notFound(fmt.Sprintf("%s is not a member of an organization named %q", u.Email, orgName))
	}
	if requireMFA && !mfa {
		return orgCaller{}, mfaRequired(orgName)
	}
	username, err := s.usernameOf(u.Email)
	if err != nil {
		return orgCaller{}, &problem{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()}
	}
	c.username = username
	return c, nil
}

// projectView is a Project as the self-service API shows it.
type projectView struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"displayName,omitempty"`
	ID          string    `json:"id,omitempty"`
	Ready       bool      `json:"ready"`
	Message     string    `json:"message,omitempty"`
	Created     time.Time `json:"createdAt"`
}

// memberView is a Membership as the self-service API shows it.
type memberView struct {
	Name          string    `json:"name"`
	Email         string    `json:"email"`
	Role          string    `json:"role"`
	Project       string    `json:"project,omitempty"`
	State         string    `json:"state,omitempty"`
	Ready         bool      `json:"ready"`
	Message       string    `json:"message,omitempty"`
	InvitationURL string    `json:"invitationURL,omitempty"`
	Created       time.Time `json:"createdAt"`
}

// apiKeyView is an APIKey as the self-service API shows it; APIKey is set only in the answer
// that issued the key.
type apiKeyView struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Project   string     `json:"project,omitempty"`
	KeyID     string     `json:"keyID,omitempty"`
	Prefix    string     `json:"prefix,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	RotatedAt *time.Time `json:"rotatedAt,omitempty"`
	Ready     bool       `json:"ready"`
	Message   string     `json:"message,omitempty"`
	APIKey    string     `json:"apiKey,omitempty"`
}

func readiness(conditions []metav1.Condition) (bool, string) {
	c := meta.FindStatusCondition(conditions, tenancyv1.ReadyCondition)
	if c == nil {
		return false, "not reconciled yet"
	}
	if c.Status == metav1.ConditionTrue {
		return true, ""
	}
	return false, c.Message
}

func timePtr(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

func (s *Server) listProjects(ctx context.Context, c orgCaller) ([]projectView, error) {
	ctx = c.as(ctx)
	var list tenancyv1.ProjectList
	if err := s.kube.AsCaller.List(ctx, &list, client.InNamespace(c.namespace)); err != nil {
		return nil, kubeProblem(err)
	}
	views := make([]projectView, 0, len(list.Items))
	for _, p := range list.Items {
		ready, message := readiness(p.Status.Conditions)
		views = append(views, projectView{Name: p.Name, DisplayName: p.Spec.DisplayName, ID: p.Status.ID, Ready: ready, Message: message,
			Created: p.CreationTimestamp.UTC()})
	}
	return views, nil
}

type projectRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

func (s *Server) createProject(ctx context.Context, c orgCaller, req projectRequest) (projectView, error) {
	ctx = c.as(ctx)
	if errs := validation.IsDNS1123Label(req.Name); len(errs) > 0 {
		return projectView{}, badRequest("name", strings.Join(errs, "; "))
	}
	p := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: c.namespace},
		Spec: tenancyv1.ProjectSpec{DisplayName: req.DisplayName}}
	if err := s.kube.AsCaller.Create(ctx, p); err != nil {
		return projectView{}, kubeProblem(err)
	}
	return projectView{Name: p.Name, DisplayName: p.Spec.DisplayName, Created: p.CreationTimestamp.UTC(), Message: "not reconciled yet"}, nil
}

func (s *Server) deleteObject(ctx context.Context, c orgCaller, obj client.Object, name string) error {
	ctx = c.as(ctx)
	obj.SetName(name)
	obj.SetNamespace(c.namespace)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return badRequest("name", strings.Join(errs, "; "))
	}
	return kubeProblem(s.kube.AsCaller.Delete(ctx, obj))
}

func (s *Server) listMembers(ctx context.Context, c orgCaller) ([]memberView, error) {
	ctx = c.as(ctx)
	var list tenancyv1.MembershipList
	if err := s.kube.AsCaller.List(ctx, &list, client.InNamespace(c.namespace)); err != nil {
		return nil, kubeProblem(err)
	}
	views := make([]memberView, 0, len(list.Items))
	for _, m := range list.Items {
		views = append(views, memberViewOf(&m))
	}
	slices.SortFunc(views, func(a, b memberView) int { return strings.Compare(a.Email+"/"+a.Project, b.Email+"/"+b.Project) })
	return views, nil
}

func memberViewOf(m *tenancyv1.Membership) memberView {
	ready, message := readiness(m.Status.Conditions)
	return memberView{Name: m.Name, Email: m.Spec.User, Role: string(m.RoleOrDefault()), Project: m.Spec.Project,
		State: string(m.Status.State), Ready: ready, Message: message, Created: m.CreationTimestamp.UTC()}
}

type memberRequest struct {
	Email   string `json:"email"`
	Role    string `json:"role"`
	Project string `json:"project"`
}

// inviteMember creates a Membership (the operator invites a user who has no password) and
// answers with the invitation link when the invitation is delivered by Link and the caller may
// read it within a few seconds, for the inviter to pass on. An emailed invitation has no link to show.
func (s *Server) inviteMember(ctx context.Context, c orgCaller, req memberRequest) (memberView, error) {
	ctx = c.as(ctx)
	email := db.NormalizeEmail(req.Email)
	if !emailPattern.MatchString(email) {
		return memberView{}, badRequest("email", fmt.Sprintf("%q is not an email address", req.Email))
	}
	role, err := parseRole("role", req.Role, tenancyv1.RoleMember)
	if err != nil {
		return memberView{}, err
	}
	m := &tenancyv1.Membership{
		ObjectMeta: metav1.ObjectMeta{Name: membershipName(email, req.Project), Namespace: c.namespace},
		Spec:       tenancyv1.MembershipSpec{User: email, Role: role, Project: req.Project},
	}
	if err := s.kube.AsCaller.Create(ctx, m); err != nil {
		return memberView{}, kubeProblem(err)
	}
	view := memberViewOf(m)
	view.InvitationURL = s.invitationURL(ctx, c, m.Name)
	return view, nil
}

// invitationURL waits briefly for the operator to invite and for the caller's RBAC to cover
// the invitation Secret; it is "" for a user who already has a password, an Owner invited by
// an Admin (only Owners read those), or an invitation that was mailed.
func (s *Server) invitationURL(ctx context.Context, c orgCaller, membershipName string) string {
	ctx = c.as(ctx)
	var link string
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		var m tenancyv1.Membership
		if err := s.kube.AsCaller.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: membershipName}, &m); err != nil {
			return false, nil
		}
		if m.Status.State == tenancyv1.MembershipActive {
			return true, nil
		}
		if m.Status.InviteSecretName == "" {
			return false, nil
		}
		var secret corev1.Secret
		if err := s.kube.AsCaller.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: m.Status.InviteSecretName}, &secret); err != nil {
			return false, nil
		}
		if string(secret.Data[tenancyv1.InvitationDeliveryKey]) == string(tenancyv1.InvitationByEmail) {
			return true, nil // mailed to the member: there is no link to show
		}
		link = string(secret.Data[tenancyv1.InvitationURLKey])
		return link != "", nil
	})
	return link
}

type roleRequest struct {
	Role string `json:"role"`
}

func (s *Server) setMemberRole(ctx context.Context, c orgCaller, name string, req roleRequest) (memberView, error) {
	ctx = c.as(ctx)
	role, err := parseRole("role", req.Role, "")
	if err != nil {
		return memberView{}, err
	}
	m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.namespace}}
	patch := fmt.Appendf(nil, `{"spec":{"role":%q}}`, role)
	if err := s.kube.AsCaller.Patch(ctx, m, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return memberView{}, kubeProblem(err)
	}
	return memberViewOf(m), nil
}

func (s *Server) listAPIKeys(ctx context.Context, c orgCaller) ([]apiKeyView, error) {
	ctx = c.as(ctx)
	var list tenancyv1.APIKeyList
	if err := s.kube.AsCaller.List(ctx, &list, client.InNamespace(c.namespace)); err != nil {
		return nil, kubeProblem(err)
	}
	views := make([]apiKeyView, 0, len(list.Items))
	for _, k := range list.Items {
		views = append(views, apiKeyViewOf(&k))
	}
	return views, nil
}

func apiKeyViewOf(k *tenancyv1.APIKey) apiKeyView {
	ready, message := readiness(k.Status.Conditions)
	return apiKeyView{Name: k.Name, Role: string(k.Spec.Role), Project: k.Spec.Project, KeyID: k.Status.KeyID, Prefix: k.Status.Prefix,
		ExpiresAt: timePtr(k.Status.ExpiresAt), RotatedAt: timePtr(k.Status.RotatedAt), Ready: ready, Message: message}
}

type apiKeyRequest struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Project   string     `json:"project"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// errKeyPending is an API key that was created or rotated but not issued in time.
var errKeyPending = errors.New("the operator has not issued the key yet")

// createAPIKey creates an APIKey and answers with the key itself, read as the caller from the
// Secret the operator writes: the only answer that ever holds it.
func (s *Server) createAPIKey(ctx context.Context, c orgCaller, req apiKeyRequest) (apiKeyView, error) {
	ctx = c.as(ctx)
	if errs := validation.IsDNS1123Label(req.Name); len(errs) > 0 {
		return apiKeyView{}, badRequest("name", strings.Join(errs, "; "))
	}
	role, err := parseRole("role", req.Role, "")
	if err != nil {
		return apiKeyView{}, err
	}
	k := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: c.namespace},
		Spec: tenancyv1.APIKeySpec{Role: role, Project: req.Project}}
	if req.ExpiresAt != nil {
		k.Spec.ExpiresAt = &metav1.Time{Time: *req.ExpiresAt}
	}
	if err := s.kube.AsCaller.Create(ctx, k); err != nil {
		return apiKeyView{}, kubeProblem(err)
	}
	return s.issuedKey(ctx, c, k.Name, nil)
}

// rotateAPIKey asks the operator for a new key (the previous one works for the grace period)
// and answers with it.
func (s *Server) rotateAPIKey(ctx context.Context, c orgCaller, name string) (apiKeyView, error) {
	ctx = c.as(ctx)
	var k tenancyv1.APIKey
	if err := s.kube.AsCaller.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: name}, &k); err != nil {
		return apiKeyView{}, kubeProblem(err)
	}
	previous := k.Status.KeyID
	patch := fmt.Appendf(nil, `{"spec":{"rotation":%q}}`, "self-service/"+time.Now().UTC().Format(time.RFC3339Nano))
	if err := s.kube.AsCaller.Patch(ctx, &k, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return apiKeyView{}, kubeProblem(err)
	}
	return s.issuedKey(ctx, c, name, &previous)
}

// issuedKey waits until the operator has issued the key of APIKey name (other than previous)
// and the caller may read its Secret.
func (s *Server) issuedKey(ctx context.Context, c orgCaller, name string, previous *string) (apiKeyView, error) {
	ctx = c.as(ctx)
	var view apiKeyView
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var k tenancyv1.APIKey
		if err := s.kube.AsCaller.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: name}, &k); err != nil {
			return false, kubeProblem(client.IgnoreNotFound(err)) // not found: the cache of the API server lags the create
		}
		view = apiKeyViewOf(&k)
		if k.Status.KeyID == "" || (previous != nil && k.Status.KeyID == *previous) {
			return false, nil
		}
		var secret corev1.Secret
		if err := s.kube.AsCaller.Get(ctx, types.NamespacedName{Namespace: c.namespace, Name: k.SecretNameOrDefault()}, &secret); err != nil {
			return false, nil // the operator is still writing it, or the caller's RBAC does not list it yet
		}
		if string(secret.Data["keyID"]) != k.Status.KeyID {
			return false, nil
		}
		view.APIKey = string(secret.Data["apiKey"])
		return true, nil
	})
	if wait.Interrupted(err) {
		view.Name = name
		return view, fmt.Errorf("%w: APIKey %s", errKeyPending, name)
	}
	return view, err
}

// auditPage is the organization's audit log for Admins and Owners of the whole organization,
// newest first, limit rows older than before (0: the newest).
func (s *Server) auditPage(ctx context.Context, c orgCaller, before int64, limit int) ([]auditRecord, error) {
	if !c.canManage() {
		return nil, &problem{Status: http.StatusForbidden, Code: "forbidden",
			Message: fmt.Sprintf("%s is not an Admin of %s: the audit log is for its Admins and Owners", c.user.Email, c.org.OrgName)}
	}
	return s.store.auditLog(ctx, c.org.OrgID, before, limit)
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

func parseRole(field, value string, fallback tenancyv1.Role) (tenancyv1.Role, error) {
	if value == "" && fallback != "" {
		return fallback, nil
	}
	role := tenancyv1.Role(value)
	if role.Rank() == 0 {
		return "", badRequest(field, fmt.Sprintf("%q is not a role: use Owner, Admin, Member or Viewer", value))
	}
	return role, nil
}

var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

var notInLabel = regexp.MustCompile(`[^a-z0-9]+`)

// membershipName names a self-service Membership after its user and project, readable in
// kubectl, and ends it in a hash of both: a.b@x.com and a-b@x.com read alike but differ.
func membershipName(email, project string) string {
	readable := notInLabel.ReplaceAllString(email, "-")
	if project != "" {
		readable = project + "-" + readable
	}
	sum := sha256.Sum256([]byte(project + "/" + email))
	return strings.Trim(readable[:min(len(readable), 40)], "-") + "-" + hex.EncodeToString(sum[:])[:10]
}
