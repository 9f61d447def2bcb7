package selfservice_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/pquerna/otp/totp"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// platformAdminUsername is the service account authd's --platform-admin-users names in this suite.
const platformAdminUsername = "system:serviceaccount:" + operatorNamespace + ":platform-admin"

// serviceAccountToken creates the service account name in the operator's namespace (if need be)
// and returns a token of it from the API server, as `kubectl create token` does.
func serviceAccountToken(ctx context.Context, name string) string {
	GinkgoHelper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: name}}
	if err := admin.Create(ctx, sa); !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	request := &authnv1.TokenRequest{}
	Expect(admin.SubResource("token").Create(ctx, sa, request)).To(Succeed())
	return request.Status.Token
}

// sessionTokens signs email in to org and returns the access and refresh tokens.
func sessionTokens(email, org string) (access, refresh string) {
	GinkgoHelper()
	resp := post("/auth/login", "", map[string]string{"email": email, "password": password, "organization": org})
	Expect(resp.StatusCode).To(Equal(http.StatusOK), resp.Raw)
	return resp.Body["access_token"].(string), resp.Body["refresh_token"].(string)
}

// hasRoleUnderRLS asks the database, as an application connected with tenancy_app and the
// request context of the access token, whether its principal holds Viewer in its organization.
func hasRoleUnderRLS(ctx context.Context, accessToken string) bool {
	GinkgoHelper()
	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(accessToken, claims)
	Expect(err).NotTo(HaveOccurred())
	var allowed bool
	Expect(pgx.BeginFunc(ctx, sqlPool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true)", claims["tctx"]); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT tenancy.has_role(tenancy.current_org_id(), NULL, 'Viewer')").Scan(&allowed)
	})).To(Succeed())
	return allowed
}

// auditRows lists "actor action target" of the audit rows that match the SQL condition.
func auditRows(ctx context.Context, condition string, args ...any) []string {
	GinkgoHelper()
	rows, err := sqlPool.Query(ctx, "SELECT actor || ' ' || action || ' ' || target FROM tenancy.audit_log WHERE "+condition+" ORDER BY id", args...)
	Expect(err).NotTo(HaveOccurred())
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	Expect(err).NotTo(HaveOccurred())
	return list
}

func userID(ctx context.Context, email string) string {
	GinkgoHelper()
	var id string
	Expect(sqlPool.QueryRow(ctx, "SELECT id::text FROM tenancy.users WHERE email = $1", email).Scan(&id)).To(Succeed())
	return id
}

func userExists(ctx context.Context, email string) bool {
	GinkgoHelper()
	var exists bool
	Expect(sqlPool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenancy.users WHERE email = $1)", email).Scan(&exists)).To(Succeed())
	return exists
}

// introspect asks authd about token with the credentials of an organization's access token.
func introspect(token, callerAccessToken string) map[string]any {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, authdURL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+callerAccessToken)
	resp := send(req)
	Expect(resp.StatusCode).To(Equal(http.StatusOK), resp.Raw)
	return resp.Body
}

// adminDo calls the admin API with a Kubernetes bearer token.
func adminDo(method, path, token string, body any) response {
	GinkgoHelper()
	return do(method, "/api/v1/admin"+path, token, body)
}

// membershipsOf lists the Membership objects of email in namespace ns.
func membershipsOf(ctx context.Context, ns, email string) []tenancyv1.Membership {
	GinkgoHelper()
	var list tenancyv1.MembershipList
	Expect(admin.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	var found []tenancyv1.Membership
	for _, m := range list.Items {
		if db.NormalizeEmail(m.Spec.User) == email {
			found = append(found, m)
		}
	}
	return found
}

var _ = Describe("Disabling an account", func() {
	It("takes a platform admin's Kubernetes token, shows in kubectl, stops the person everywhere at once, and is undone", func(ctx SpecContext) {
		t := newTenant(ctx)
		adminToken := serviceAccountToken(ctx, "platform-admin")
		access, refresh := sessionTokens(t.member, t.org.Name)
		Expect(hasRoleUnderRLS(ctx, access)).To(BeTrue())

		By("refusing anyone but a platform admin")
		Expect(adminDo(http.MethodPost, "/suspensions", "", map[string]string{"email": t.member}).StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(adminDo(http.MethodPost, "/suspensions", access, map[string]string{"email": t.member}).StatusCode).
			To(Equal(http.StatusUnauthorized), "authd's own access tokens are not Kubernetes credentials")
		stranger := adminDo(http.MethodPost, "/suspensions", serviceAccountToken(ctx, "someone"), map[string]string{"email": t.member})
		Expect(stranger.StatusCode).To(Equal(http.StatusForbidden), stranger.Raw)
		Expect(stranger.Body["error_description"]).To(ContainSubstring("is not a platform admin"))
		Expect(adminDo(http.MethodPost, "/suspensions", adminToken, map[string]string{"reason": "no address"}).StatusCode).To(Equal(http.StatusBadRequest))

		By("disabling through the admin API")
		created := adminDo(http.MethodPost, "/suspensions", adminToken, map[string]string{"email": strings.ToUpper(t.member), "reason": "chargeback"})
		Expect(created.StatusCode).To(Equal(http.StatusCreated), created.Raw)
		Expect(created.Body).To(HaveKeyWithValue("email", t.member))
		suspension := &tenancyv1.AccountSuspension{ObjectMeta: metav1.ObjectMeta{Name: created.Body["name"].(string)}}
		eventuallyReady(ctx, suspension)
		Expect(suspension.Spec.Reason).To(Equal("chargeback"))
		Expect(suspension.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, platformAdminUsername))
		Expect(suspension.Status.UserID).To(Equal(userID(ctx, t.member)))
		Expect(suspension.Status.SessionsEnded).To(BeNumerically(">=", 1))
		again := adminDo(http.MethodPost, "/suspensions", adminToken, map[string]string{"email": t.member})
		Expect(again.StatusCode).To(Equal(http.StatusOK), "one suspension per address")
		Expect(again.Body).To(HaveKeyWithValue("name", suspension.Name))
		listed := adminDo(http.MethodGet, "/suspensions", adminToken, nil)
		Expect(listed.StatusCode).To(Equal(http.StatusOK))
		Expect(items(listed)).To(ContainElement(HaveKeyWithValue("email", t.member)))

		By("stopping the person at once: the database, refresh, introspection and login")
		Expect(hasRoleUnderRLS(ctx, access)).To(BeFalse(), "has_role reads the live user row: the unexpired token opens nothing")
		Expect(post("/auth/refresh", "", map[string]string{"refresh_token": refresh}).StatusCode).To(Equal(http.StatusBadRequest), "invalid_grant: the session ended")
		Expect(do(http.MethodGet, "/api/v1/me/sessions", access, nil).StatusCode).To(Equal(http.StatusUnauthorized))
		relogin := post("/auth/login", "", map[string]string{"email": t.member, "password": password, "organization": t.org.Name})
		Expect(relogin.StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(relogin.Body).To(HaveKeyWithValue("error", "invalid_credentials"), "a disabled account gets the answer of a wrong password")
		ownerAccess := login(t.owner, t.org.Name)
		Expect(introspect(access, ownerAccess)).To(HaveKeyWithValue("active", false))
		Expect(introspect(ownerAccess, ownerAccess)).To(HaveKeyWithValue("active", true), "the rest of the organization carries on")

		By("refusing a tenancy user that RBAC does not let write suspensions")
		err := kubectlAs(t.owner).Create(ctx, &tenancyv1.AccountSuspension{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("rogue")},
			Spec: tenancyv1.AccountSuspensionSpec{Email: t.admin}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)

		By("enabling again")
		Expect(adminDo(http.MethodDelete, "/suspensions/"+url.PathEscape(t.member), adminToken, nil).StatusCode).To(Equal(http.StatusNoContent))
		Eventually(func() int {
			return post("/auth/login", "", map[string]string{"email": t.member, "password": password, "organization": t.org.Name}).StatusCode
		}).WithContext(ctx).Should(Equal(http.StatusOK))
		Expect(hasRoleUnderRLS(ctx, login(t.member, t.org.Name))).To(BeTrue())
		Expect(adminDo(http.MethodDelete, "/suspensions/"+url.PathEscape(t.member), adminToken, nil).StatusCode).To(Equal(http.StatusNotFound))
		Eventually(func() []string {
			return auditRows(ctx, "target = $1", "accountsuspension/"+suspension.Name)
		}).WithContext(ctx).Should(Equal([]string{
			platformAdminUsername + " account.suspended accountsuspension/" + suspension.Name,
			platformAdminUsername + " account.suspension_lifted accountsuspension/" + suspension.Name,
		}))
	})

	It("works from kubectl alone, before the account exists, and refuses non-admins that RBAC lets in", func(ctx SpecContext) {
		t := newTenant(ctx)
		newcomer := "newcomer@" + t.org.Name + ".example"
		suspension := &tenancyv1.AccountSuspension{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("suspend")},
			Spec: tenancyv1.AccountSuspensionSpec{Email: newcomer, Reason: "fraud"}}
		Expect(admin.Create(ctx, suspension)).To(Succeed())
		eventuallyReady(ctx, suspension)
		Expect(suspension.Status.UserID).To(BeEmpty())

		By("an account created afterwards starts disabled")
		m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(), Name: uniqueName("m")},
			Spec: tenancyv1.MembershipSpec{User: newcomer, Role: tenancyv1.RoleMember}}
		Expect(admin.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		var disabled bool
		Expect(sqlPool.QueryRow(ctx, "SELECT disabled FROM tenancy.users WHERE email = $1", newcomer).Scan(&disabled)).To(Succeed())
		Expect(disabled).To(BeTrue())
		accepted := post("/auth/invitations/accept", "", map[string]string{"token": inviteToken(ctx, m), "password": password})
		Expect(accepted.StatusCode).NotTo(Equal(http.StatusOK), accepted.Raw)

		By("spec.email cannot change")
		before := suspension.DeepCopy()
		suspension.Spec.Email = t.owner
		err := admin.Patch(ctx, suspension, client.MergeFrom(before))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.email is immutable"))

		By("a ClusterRole that grants too much does not make a tenancy user a platform admin")
		mallory := "mallory@" + t.org.Name + ".example"
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("suspender")},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: []string{"accountsuspensions"}, Verbs: []string{"*"}}}}
		Expect(admin.Create(ctx, role)).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: mallory}}})).To(Succeed())
		Eventually(func() string {
			err := kubectlAs(mallory).Create(ctx, &tenancyv1.AccountSuspension{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("rogue")},
				Spec: tenancyv1.AccountSuspensionSpec{Email: t.owner}})
			return fmt.Sprint(err)
		}).WithContext(ctx).Should(ContainSubstring("is not a platform admin"))
		err = kubectlAs(mallory).Delete(ctx, suspension)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("is not a platform admin"))

		By("deleting the suspension with kubectl enables the account")
		Expect(admin.Delete(ctx, suspension)).To(Succeed())
		Eventually(func() bool {
			Expect(sqlPool.QueryRow(ctx, "SELECT disabled FROM tenancy.users WHERE email = $1", newcomer).Scan(&disabled)).To(Succeed())
			return disabled
		}).WithContext(ctx).Should(BeFalse())
		accepted = post("/auth/invitations/accept", "", map[string]string{"token": inviteToken(ctx, m), "password": password})
		Expect(accepted.StatusCode).To(Equal(http.StatusOK), accepted.Raw)
	})
})

var _ = Describe("Deleting an account", func() {
	It("by the person: needs the password, keeps the last Owner, ends everything at once, and erases the person but not the organization", func(ctx SpecContext) {
		t := newTenant(ctx)
		access, refresh := sessionTokens(t.member, t.org.Name)
		id := userID(ctx, t.member)

		By("refusing a wrong password and a stolen token alone")
		wrong := do(http.MethodDelete, "/api/v1/me", access, map[string]string{"password": "not the password at all"})
		Expect(wrong.StatusCode).To(Equal(http.StatusUnauthorized), wrong.Raw)
		Expect(do(http.MethodDelete, "/api/v1/me", "", map[string]string{"password": password}).StatusCode).To(Equal(http.StatusUnauthorized))

		By("refusing the last Owner with the organizations named")
		lastOwner := do(http.MethodDelete, "/api/v1/me", login(t.owner, t.org.Name), map[string]string{"password": password})
		Expect(lastOwner.StatusCode).To(Equal(http.StatusConflict), lastOwner.Raw)
		Expect(lastOwner.Body).To(HaveKeyWithValue("error", "last_owner"))
		Expect(lastOwner.Body["error_description"]).To(ContainSubstring(t.org.Name))

		By("accepting the member's own deletion and stopping them at once")
		accepted := do(http.MethodDelete, "/api/v1/me", access, map[string]string{"password": password})
		Expect(accepted.StatusCode).To(Equal(http.StatusAccepted), accepted.Raw)
		Expect(accepted.Body).To(HaveKeyWithValue("status", "deletion_pending"))
		Expect(hasRoleUnderRLS(ctx, access)).To(BeFalse())
		Expect(post("/auth/refresh", "", map[string]string{"refresh_token": refresh}).StatusCode).To(Equal(http.StatusBadRequest), "invalid_grant: the session ended")
		Expect(post("/auth/login", "", map[string]string{"email": t.member, "password": password}).StatusCode).To(Equal(http.StatusUnauthorized))

		By("the manager deletes the Memberships, then erases the account")
		Eventually(func() []tenancyv1.Membership { return membershipsOf(ctx, t.ns(), t.member) }).WithContext(ctx).Should(BeEmpty())
		Eventually(func() bool { return userExists(ctx, t.member) }).WithContext(ctx).Should(BeFalse())

		By("the audit log keeps the rows under a name that says nothing of the person")
		Expect(auditRows(ctx, "actor ILIKE $1 OR target ILIKE $1 OR details::text ILIKE $1", "%"+t.member+"%")).To(BeEmpty())
		pseudonym := db.DeletedUserName(id)
		Expect(auditRows(ctx, "actor_user_id = $1", id)).To(ContainElement(pseudonym + " account.deletion_requested user/" + pseudonym))
		Expect(auditRows(ctx, "target = $1", "user/"+pseudonym)).To(ContainElement("system:tenancy:account-eraser account.erased user/" + pseudonym))
		var clientAddresses int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE actor_user_id = $1 AND details ? 'client_address'", id).
			Scan(&clientAddresses)).To(Succeed())
		Expect(clientAddresses).To(BeZero())

		By("nothing else is lost")
		for _, other := range []string{t.owner, t.admin, t.viewer} {
			Expect(membershipsOf(ctx, t.ns(), other)).To(HaveLen(1))
		}
		members := do(http.MethodGet, orgPath(t.org.Name, "/members"), login(t.admin, t.org.Name), nil)
		Expect(members.StatusCode).To(Equal(http.StatusOK))
		Expect(items(members)).To(HaveLen(3))
		eventuallyReady(ctx, t.org)
	})

	It("by a platform admin, and by an Owner once another Owner remains", func(ctx SpecContext) {
		t := newTenant(ctx)
		adminToken := serviceAccountToken(ctx, "platform-admin")
		Expect(adminDo(http.MethodDelete, "/users/"+url.PathEscape(t.viewer), serviceAccountToken(ctx, "someone"), nil).StatusCode).To(Equal(http.StatusForbidden))
		Expect(adminDo(http.MethodDelete, "/users/nobody@nowhere.example", adminToken, nil).StatusCode).To(Equal(http.StatusNotFound))
		Expect(adminDo(http.MethodDelete, "/users/"+url.PathEscape(t.owner), adminToken, nil).StatusCode).To(Equal(http.StatusConflict))

		viewerID := userID(ctx, t.viewer)
		deleted := adminDo(http.MethodDelete, "/users/"+url.PathEscape(t.viewer), adminToken, nil)
		Expect(deleted.StatusCode).To(Equal(http.StatusAccepted), deleted.Raw)
		Eventually(func() bool { return userExists(ctx, t.viewer) }).WithContext(ctx).Should(BeFalse())
		pseudonym := db.DeletedUserName(viewerID)
		Expect(auditRows(ctx, "action = 'account.deletion_requested' AND target = $1", "user/"+pseudonym)).
			To(Equal([]string{platformAdminUsername + " account.deletion_requested user/" + pseudonym}))

		By("an Owner may go once the organization has another")
		addMember(ctx, t.ns(), "second-owner@"+t.org.Name+".example", tenancyv1.RoleOwner, "")
		gone := do(http.MethodDelete, "/api/v1/me", login(t.owner, t.org.Name), map[string]string{"password": password})
		Expect(gone.StatusCode).To(Equal(http.StatusAccepted), gone.Raw)
		Eventually(func() bool { return userExists(ctx, t.owner) }).WithContext(ctx).Should(BeFalse())
		Expect(membershipsOf(ctx, t.ns(), "second-owner@"+t.org.Name+".example")).To(HaveLen(1))
		Expect(login("second-owner@"+t.org.Name+".example", t.org.Name)).NotTo(BeEmpty())
	})

	It("with two-factor authentication on: needs a second factor too", func(ctx SpecContext) {
		t := newTenant(ctx)
		access := login(t.viewer, t.org.Name)
		id := userID(ctx, t.viewer)
		started := post("/api/v1/me/mfa/totp", access, nil)
		Expect(started.StatusCode).To(Equal(http.StatusOK), started.Raw)
		code, err := totp.GenerateCode(started.Body["secret"].(string), time.Now())
		Expect(err).NotTo(HaveOccurred())
		confirmed := post("/api/v1/me/mfa/totp/confirm", access, map[string]string{"code": code})
		Expect(confirmed.StatusCode).To(Equal(http.StatusOK), confirmed.Raw)
		recoveryCodes := confirmed.Body["recovery_codes"].([]any)

		withoutFactor := do(http.MethodDelete, "/api/v1/me", access, map[string]string{"password": password})
		Expect(withoutFactor.StatusCode).To(Equal(http.StatusBadRequest), withoutFactor.Raw)
		Expect(withoutFactor.Body["error_description"]).To(HavePrefix("otp: required"))
		wrongFactor := do(http.MethodDelete, "/api/v1/me", access, map[string]string{"password": password, "recovery_code": "aaaa-bbbb-cccc"})
		Expect(wrongFactor.StatusCode).To(Equal(http.StatusBadRequest), wrongFactor.Raw)
		Expect(userExists(ctx, t.viewer)).To(BeTrue())

		accepted := do(http.MethodDelete, "/api/v1/me", access, map[string]string{"password": password, "recovery_code": recoveryCodes[0].(string)})
		Expect(accepted.StatusCode).To(Equal(http.StatusAccepted), accepted.Raw)
		Eventually(func() bool { return userExists(ctx, t.viewer) }).WithContext(ctx).Should(BeFalse())
		var left int
		Expect(sqlPool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenancy.totp_factors WHERE user_id = $1) + (SELECT count(*) FROM tenancy.recovery_codes WHERE user_id = $1)`, id).
			Scan(&left)).To(Succeed())
		Expect(left).To(BeZero(), "the second factor and the recovery codes go with the account")
	})
})
