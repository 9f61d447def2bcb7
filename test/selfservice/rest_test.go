package selfservice_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("The self-service REST API", func() {
	var t tenant
	BeforeEach(func(ctx SpecContext) { t = newTenant(ctx) })

	It("lists an organization's projects, members and keys for every role, and hides other organizations", func(ctx SpecContext) {
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(), Name: "web"}}
		Expect(admin.Create(ctx, project)).To(Succeed())
		eventuallyReady(ctx, project)
		for _, email := range []string{t.owner, t.admin, t.member, t.viewer} {
			token := login(email, t.org.Name)
			projects := do(http.MethodGet, orgPath(t.org.Name, "/projects"), token, nil)
			Expect(projects.StatusCode).To(Equal(http.StatusOK), projects.Raw)
			Expect(items(projects)).To(ContainElement(And(HaveKeyWithValue("name", "web"), HaveKeyWithValue("ready", true))))
			members := do(http.MethodGet, orgPath(t.org.Name, "/members"), token, nil)
			Expect(members.StatusCode).To(Equal(http.StatusOK), members.Raw)
			Expect(items(members)).To(ContainElement(And(HaveKeyWithValue("email", t.owner), HaveKeyWithValue("role", "Owner"), HaveKeyWithValue("state", "Active"))))
			Expect(items(members)).To(HaveLen(4))
		}

		other := newTenant(ctx)
		outsider := do(http.MethodGet, orgPath(t.org.Name, "/members"), login(other.owner, other.org.Name), nil)
		Expect(outsider.StatusCode).To(Equal(http.StatusNotFound), outsider.Raw)
		Expect(outsider.Body).To(HaveKeyWithValue("error", "not_found"))
		unknown := do(http.MethodGet, orgPath("no-such-org", "/members"), login(t.owner, t.org.Name), nil)
		Expect(unknown.StatusCode).To(Equal(http.StatusNotFound))
		// An unknown organization and somebody else's read alike.
		Expect(unknown.Body["error_description"]).To(Equal(t.owner + ` is not a member of an organization named "no-such-org"`))
		Expect(outsider.Body["error_description"]).To(Equal(other.owner + ` is not a member of an organization named "` + t.org.Name + `"`))
	})

	It("invites as the caller: the Membership names them, and the answer holds the invitation link", func(ctx SpecContext) {
		resp := post(orgPath(t.org.Name, "/members"), login(t.admin, t.org.Name), map[string]string{"email": " New.Person@Example.COM ", "role": "Member"})
		Expect(resp.StatusCode).To(Equal(http.StatusCreated), resp.Raw)
		Expect(resp.Body).To(HaveKeyWithValue("email", "new.person@example.com"))
		Expect(resp.Body["invitationURL"]).To(HavePrefix(authdURL + "/invite?token="))

		var m tenancyv1.Membership
		Expect(admin.Get(ctx, types.NamespacedName{Namespace: t.ns(), Name: resp.Body["name"].(string)}, &m)).To(Succeed())
		Expect(m.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, t.admin))
		Expect(m.Spec.Role).To(Equal(tenancyv1.RoleMember))

		// The link works: the invitee sets a password and logs in.
		link, err := url.Parse(resp.Body["invitationURL"].(string))
		Expect(err).NotTo(HaveOccurred())
		accepted := post("/auth/invitations/accept", "", map[string]string{"token": link.Query().Get("token"), "password": password})
		Expect(accepted.StatusCode).To(Equal(http.StatusOK), accepted.Raw)
		login("new.person@example.com", t.org.Name)
	})

	It("answers a webhook's refusal with the status, message and fields kubectl gets", func(ctx SpecContext) {
		resp := post(orgPath(t.org.Name, "/members"), login(t.admin, t.org.Name), map[string]string{"email": "boss@example.com", "role": "Owner"})
		Expect(resp.StatusCode).To(Equal(http.StatusUnprocessableEntity), resp.Raw)

		name := regexp.MustCompile(`Membership.tenancy.dev "([^"]+)"`).FindStringSubmatch(resp.Body["error_description"].(string))
		Expect(name).To(HaveLen(2), resp.Raw)
		kubectl := kubectlAs(t.admin).Create(ctx, &tenancyv1.Membership{
			ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(), Name: name[1]},
			Spec:       tenancyv1.MembershipSpec{User: "boss@example.com", Role: tenancyv1.RoleOwner},
		})
		status, ok := kubectl.(apierrors.APIStatus)
		Expect(ok).To(BeTrue(), "%v", kubectl)
		Expect(resp.StatusCode).To(BeEquivalentTo(status.Status().Code))
		Expect(resp.Body["error_description"]).To(Equal(status.Status().Message))
		Expect(resp.Body["error_description"]).To(ContainSubstring("spec.role: Forbidden: " + t.admin + " is Admin in " + t.org.Name + " and cannot grant Owner"))
		Expect(resp.Body["fields"]).To(ConsistOf(And(HaveKeyWithValue("field", "spec.role"), HaveKeyWithValue("type", "FieldValueForbidden"))))
	})

	It("answers RBAC's refusal as 403 for a Viewer, and a last-Owner removal as the webhook refuses it", func(ctx SpecContext) {
		viewer := login(t.viewer, t.org.Name)
		resp := post(orgPath(t.org.Name, "/projects"), viewer, map[string]string{"name": "mine"})
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden), resp.Raw)
		Expect(resp.Body).To(HaveKeyWithValue("error", "forbidden"))
		Expect(resp.Body["error_description"]).To(ContainSubstring(`User "` + t.viewer + `" cannot create resource "projects"`))

		owner := login(t.owner, t.org.Name)
		var ownerName string
		for _, m := range items(do(http.MethodGet, orgPath(t.org.Name, "/members"), owner, nil)) {
			if m["email"] == t.owner {
				ownerName = m["name"].(string)
			}
		}
		removal := do(http.MethodDelete, orgPath(t.org.Name, "/members/"+ownerName), owner, nil)
		Expect(removal.StatusCode).To(Equal(http.StatusForbidden), removal.Raw)
		Expect(removal.Body["error_description"]).To(ContainSubstring("spec.role"))
		Expect(removal.Body["error_description"]).To(ContainSubstring(t.org.Name + " would have no Owner left"))
	})

	It("changes roles and removes members", func(ctx SpecContext) {
		owner := login(t.owner, t.org.Name)
		members := items(do(http.MethodGet, orgPath(t.org.Name, "/members"), owner, nil))
		var memberName string
		for _, m := range members {
			if m["email"] == t.member {
				memberName = m["name"].(string)
			}
		}
		promoted := do(http.MethodPatch, orgPath(t.org.Name, "/members/"+memberName), owner, map[string]string{"role": "Admin"})
		Expect(promoted.StatusCode).To(Equal(http.StatusOK), promoted.Raw)
		Expect(promoted.Body).To(HaveKeyWithValue("role", "Admin"))
		badRole := do(http.MethodPatch, orgPath(t.org.Name, "/members/"+memberName), owner, map[string]string{"role": "King"})
		Expect(badRole.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(badRole.Body["fields"]).To(ConsistOf(HaveKeyWithValue("field", "role")))

		removed := do(http.MethodDelete, orgPath(t.org.Name, "/members/"+memberName), owner, nil)
		Expect(removed.StatusCode).To(Equal(http.StatusNoContent), removed.Raw)
		Eventually(func() error {
			return admin.Get(ctx, types.NamespacedName{Namespace: t.ns(), Name: memberName}, &tenancyv1.Membership{})
		}).WithContext(ctx).Should(Satisfy(apierrors.IsNotFound))
		missing := do(http.MethodDelete, orgPath(t.org.Name, "/members/"+memberName), owner, nil)
		Expect(missing.StatusCode).To(Equal(http.StatusNotFound), missing.Raw)
	})

	It("creates an API key shown once, rotates it, and deletes it", func(ctx SpecContext) {
		adminToken := login(t.admin, t.org.Name)
		created := post(orgPath(t.org.Name, "/apikeys"), adminToken, map[string]string{"name": "ci", "role": "Member"})
		Expect(created.StatusCode).To(Equal(http.StatusCreated), created.Raw)
		key, keyID := created.Body["apiKey"].(string), created.Body["keyID"].(string)
		Expect(key).To(HavePrefix("tnc_"))
		Expect(clientCredentials(keyID, key)).To(Equal(http.StatusOK))

		listed := items(do(http.MethodGet, orgPath(t.org.Name, "/apikeys"), adminToken, nil))
		Expect(listed).To(ConsistOf(And(HaveKeyWithValue("name", "ci"), HaveKeyWithValue("keyID", keyID), Not(HaveKey("apiKey")))))

		rotated := post(orgPath(t.org.Name, "/apikeys/ci/rotate"), adminToken, nil)
		Expect(rotated.StatusCode).To(Equal(http.StatusOK), rotated.Raw)
		Expect(rotated.Body["apiKey"]).NotTo(Equal(key))
		Expect(clientCredentials(rotated.Body["keyID"].(string), rotated.Body["apiKey"].(string))).To(Equal(http.StatusOK))
		Expect(clientCredentials(keyID, key)).To(Equal(http.StatusOK), "the previous key works for the grace period")

		owner := post(orgPath(t.org.Name, "/apikeys"), adminToken, map[string]string{"name": "root", "role": "Owner"})
		Expect(owner.StatusCode).To(Equal(http.StatusUnprocessableEntity), owner.Raw)
		Expect(owner.Body["fields"]).To(ContainElement(HaveKeyWithValue("field", "spec.role")))

		deleted := do(http.MethodDelete, orgPath(t.org.Name, "/apikeys/ci"), adminToken, nil)
		Expect(deleted.StatusCode).To(Equal(http.StatusNoContent), deleted.Raw)
		Eventually(func() int { return clientCredentials(rotated.Body["keyID"].(string), rotated.Body["apiKey"].(string)) }).
			WithContext(ctx).Should(Equal(http.StatusUnauthorized))
	})

	It("pages through the audit log, which names the caller, for Admins and refuses it to Members", func(ctx SpecContext) {
		adminToken := login(t.admin, t.org.Name)
		for i := range 3 {
			resp := post(orgPath(t.org.Name, "/projects"), adminToken, map[string]string{"name": "p" + strconv.Itoa(i)})
			Expect(resp.StatusCode).To(Equal(http.StatusCreated), resp.Raw)
		}
		// The operator's rows name the caller: authd acted as them, and the webhooks recorded who.
		Eventually(func(g Gomega) {
			page := do(http.MethodGet, orgPath(t.org.Name, "/audit?limit=200"), adminToken, nil)
			g.Expect(page.StatusCode).To(Equal(http.StatusOK), page.Raw)
			var created []string
			for _, row := range items(page) {
				if row["action"] == "project.created" && row["actor"] == t.admin {
					created = append(created, row["target"].(string))
				}
			}
			g.Expect(created).To(ConsistOf("project/p2", "project/p1", "project/p0")) // reconciled in parallel
		}).WithContext(ctx).Should(Succeed())
		all := items(do(http.MethodGet, orgPath(t.org.Name, "/audit?limit=200"), adminToken, nil))
		var paged []map[string]any
		for before := ""; ; {
			page := do(http.MethodGet, orgPath(t.org.Name, "/audit?limit=2"+before), adminToken, nil)
			Expect(page.StatusCode).To(Equal(http.StatusOK), page.Raw)
			Expect(len(items(page))).To(BeNumerically("<=", 2))
			paged = append(paged, items(page)...)
			next, ok := page.Body["next"].(string)
			if !ok {
				break
			}
			before = "&before=" + next
		}
		Expect(paged).To(Equal(all), "pages of two, newest first, add up to the whole log")
		for i := 1; i < len(paged); i++ {
			Expect(paged[i]["id"].(float64)).To(BeNumerically("<", paged[i-1]["id"].(float64)))
		}

		beyond := do(http.MethodGet, orgPath(t.org.Name, "/audit?limit=1&before=99999999999"), adminToken, nil)
		Expect(beyond.StatusCode).To(Equal(http.StatusOK), "audit ids are 64-bit: %s", beyond.Raw)
		Expect(items(beyond)).To(Equal(all[:1]))
		bad := do(http.MethodGet, orgPath(t.org.Name, "/audit?limit=5000"), adminToken, nil)
		Expect(bad.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(bad.Body["fields"]).To(ConsistOf(HaveKeyWithValue("field", "limit")))
		member := do(http.MethodGet, orgPath(t.org.Name, "/audit"), login(t.member, t.org.Name), nil)
		Expect(member.StatusCode).To(Equal(http.StatusForbidden))
		Expect(member.Body["error_description"]).To(ContainSubstring("is not an Admin of " + t.org.Name))
	})

	It("lists the caller's sessions and ends one or all the others", func(ctx SpecContext) {
		first := post("/auth/login", "", map[string]string{"email": t.member, "password": password})
		second := post("/auth/login", "", map[string]string{"email": t.member, "password": password})
		third := post("/auth/login", "", map[string]string{"email": t.member, "password": password})
		token := second.Body["access_token"].(string)
		sessions := items(do(http.MethodGet, "/api/v1/me/sessions", token, nil))
		Expect(sessions).To(HaveLen(4), "three logins, and the session that accepting the invitation started")
		Expect(sessions).To(ContainElement(HaveKeyWithValue("current", true)))

		var firstID string
		for _, s := range sessions {
			if !s["current"].(bool) {
				firstID = s["id"].(string)
				break
			}
		}
		Expect(do(http.MethodDelete, "/api/v1/me/sessions/"+firstID, token, nil).StatusCode).To(Equal(http.StatusNoContent))
		Expect(do(http.MethodDelete, "/api/v1/me/sessions/"+firstID, token, nil).StatusCode).To(Equal(http.StatusNotFound))
		Expect(items(do(http.MethodGet, "/api/v1/me/sessions", token, nil))).To(HaveLen(3))

		Expect(do(http.MethodDelete, "/api/v1/me/sessions", token, nil).StatusCode).To(Equal(http.StatusNoContent))
		Expect(items(do(http.MethodGet, "/api/v1/me/sessions", token, nil))).To(ConsistOf(HaveKeyWithValue("current", true)))
		for _, ended := range []response{first, third} {
			refresh := post("/auth/refresh", "", map[string]string{"refresh_token": ended.Body["refresh_token"].(string)})
			Expect(refresh.Body).To(HaveKeyWithValue("error", "invalid_grant"))
		}
		kept := post("/auth/refresh", "", map[string]string{"refresh_token": second.Body["refresh_token"].(string)})
		Expect(kept.StatusCode).To(Equal(http.StatusOK), kept.Raw)
	})

	It("changes a password only with the current one, and ends the other sessions", func(ctx SpecContext) {
		other := post("/auth/login", "", map[string]string{"email": t.viewer, "password": password})
		mine := post("/auth/login", "", map[string]string{"email": t.viewer, "password": password, "organization": t.org.Name})
		token := mine.Body["access_token"].(string)
		wrong := do(http.MethodPut, "/api/v1/me/password", token, map[string]string{"currentPassword": "nope", "newPassword": "a brand new passphrase"})
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(wrong.Body["fields"]).To(ConsistOf(HaveKeyWithValue("field", "currentPassword")))
		short := do(http.MethodPut, "/api/v1/me/password", token, map[string]string{"currentPassword": password, "newPassword": "short"})
		Expect(short.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(short.Body["fields"]).To(ConsistOf(HaveKeyWithValue("field", "newPassword")))

		changed := do(http.MethodPut, "/api/v1/me/password", token, map[string]string{"currentPassword": password, "newPassword": "a brand new passphrase"})
		Expect(changed.StatusCode).To(Equal(http.StatusNoContent), changed.Raw)
		Expect(post("/auth/refresh", "", map[string]string{"refresh_token": other.Body["refresh_token"].(string)}).Body).
			To(HaveKeyWithValue("error", "invalid_grant"))
		kept := post("/auth/refresh", "", map[string]string{"refresh_token": mine.Body["refresh_token"].(string)})
		Expect(kept.StatusCode).To(Equal(http.StatusOK), "the session that changed the password goes on: %s", kept.Raw)
		Expect(post("/auth/login", "", map[string]string{"email": t.viewer, "password": "a brand new passphrase"}).StatusCode).To(Equal(http.StatusOK))
		Expect(post("/auth/login", "", map[string]string{"email": t.viewer, "password": password}).StatusCode).To(Equal(http.StatusUnauthorized))
	})

	It("refuses API keys, missing tokens and malformed bodies with one error shape", func(ctx SpecContext) {
		key := post(orgPath(t.org.Name, "/apikeys"), login(t.admin, t.org.Name), map[string]string{"name": "robot", "role": "Admin"})
		Expect(key.StatusCode).To(Equal(http.StatusCreated), key.Raw)
		viaKey := do(http.MethodGet, orgPath(t.org.Name, "/members"), tokenOfKey(key.Body["keyID"].(string), key.Body["apiKey"].(string)), nil)
		Expect(viaKey.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(viaKey.Body).To(HaveKeyWithValue("error", "invalid_token"))
		Expect(viaKey.Header.Get("WWW-Authenticate")).To(ContainSubstring("invalid_token"))

		Expect(do(http.MethodGet, orgPath(t.org.Name, "/members"), "", nil).StatusCode).To(Equal(http.StatusUnauthorized))

		// A token carries the authority of its organization only, and only unnarrowed.
		other := newTenant(ctx)
		addMember(ctx, other.ns(), t.admin, tenancyv1.RoleMember, "")
		elsewhere := do(http.MethodGet, orgPath(t.org.Name, "/members"), login(t.admin, other.org.Name), nil)
		Expect(elsewhere.StatusCode).To(Equal(http.StatusForbidden), elsewhere.Raw)
		Expect(elsewhere.Body["error_description"]).To(ContainSubstring("not for the organization " + t.org.Name + " as a whole"))
		project := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(), Name: "narrow"}}
		Expect(admin.Create(ctx, project)).To(Succeed())
		eventuallyReady(ctx, project)
		projectMember := uniqueName("dev") + "@example.com"
		addMember(ctx, t.ns(), projectMember, tenancyv1.RoleAdmin, "narrow")
		narrowed := do(http.MethodGet, orgPath(t.org.Name, "/members"), login(projectMember, t.org.Name), nil)
		Expect(narrowed.StatusCode).To(Equal(http.StatusForbidden), narrowed.Raw)
		Expect(narrowed.Body["error_description"]).To(ContainSubstring("as a whole"))
		req, err := http.NewRequest(http.MethodPost, authdURL+orgPath(t.org.Name, "/members"), strings.NewReader("{not json"))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+login(t.admin, t.org.Name))
		req.Header.Set("Content-Type", "application/json")
		malformed := send(req)
		Expect(malformed.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(malformed.Body).To(And(HaveKeyWithValue("error", "invalid_request"), HaveKey("error_description")))
		badEmail := post(orgPath(t.org.Name, "/members"), login(t.admin, t.org.Name), map[string]string{"email": "not-an-email"})
		Expect(badEmail.StatusCode).To(Equal(http.StatusBadRequest))
		Expect(badEmail.Body["fields"]).To(ConsistOf(HaveKeyWithValue("field", "email")))
	})
})

// clientCredentials trades an API key for a token and returns the status.
func clientCredentials(keyID, key string) int {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, authdURL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(keyID, key)
	return send(req).StatusCode
}

func tokenOfKey(keyID, key string) string {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, authdURL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(keyID, key)
	resp := send(req)
	Expect(resp.StatusCode).To(Equal(http.StatusOK), resp.Raw)
	return resp.Body["access_token"].(string)
}
