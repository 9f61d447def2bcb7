package faults_test

import (
	"context"
	"crypto/sha256"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// The controllers' own suite already shows organization and project rows, a RoleBinding's
// subjects, a dropped policy and deleted Secrets put back. These are the rest of what a person
// with database or cluster access might change by hand.
var _ = Describe("Changes by hand", Ordered, func() {
	var s *stack
	var owner, admin, viewer *tenancyv1.Membership
	var ci *tenancyv1.APIKey

	BeforeAll(func(ctx SpecContext) {
		s = newStack(ctx, newDatabase(ctx))
		s.startManager("manager", managerOptions{resyncPeriod: 2 * time.Second})
		s.waitForWebhooks(ctx)
		Expect(applyAll(ctx, s.kube, []client.Object{organization("drift")})).To(Succeed())
		Expect(applyAll(ctx, s.kube, tenantObjects("drift", 1))).To(Succeed())
		_, err := s.sql.Exec(ctx, "CREATE TABLE public.notes (id bigserial PRIMARY KEY, org_id uuid NOT NULL); CREATE INDEX ON public.notes (org_id)")
		Expect(err).NotTo(HaveOccurred())
		Expect(applyAll(ctx, s.kube, []client.Object{&tenancyv1.TenantTable{ObjectMeta: metav1.ObjectMeta{Name: "notes"},
			Spec: tenancyv1.TenantTableSpec{Table: "notes"}}})).To(Succeed())
		Eventually(func(g Gomega) { expectAllReady(g, ctx, s.kube) }).WithContext(ctx).Should(Succeed())
		owner, admin, viewer = &tenancyv1.Membership{}, &tenancyv1.Membership{}, &tenancyv1.Membership{}
		ci = &tenancyv1.APIKey{}
		for name, obj := range map[string]client.Object{"owner": owner, "admin": admin, "viewer": viewer, "ci": ci} {
			Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: "drift", Name: name}, obj)).To(Succeed())
		}
	}, NodeTimeout(3*time.Minute))

	It("puts back a deleted membership row with its id, and a new invitation", func(ctx SpecContext) {
		exec(ctx, s, "DELETE FROM tenancy.memberships WHERE uid = $1", string(admin.UID))
		Eventually(func() (testenv.MembershipRow, error) {
			return testenv.ReadMembership(ctx, s.sql, "m.uid = $1", string(admin.UID))
		}).WithContext(ctx).Should(MatchFields(IgnoreExtras, Fields{
			"ID":   Equal(admin.Status.ID),
			"Role": Equal("Admin"),
		}))
		// The invitation went with the row (ON DELETE CASCADE); the Secret gets a new one.
		Eventually(func(g Gomega) { g.Expect(invitationIsLive(ctx, s, admin)).To(BeTrue()) }).WithContext(ctx).Should(Succeed())
		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(s.kube.List(ctx, &events, client.InNamespace("drift"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("InvolvedObject.UID", admin.UID), HaveField("Reason", "DriftRestored"))))
		}).WithContext(ctx).Should(Succeed())
	})

	It("puts back a membership row whose role was raised", func(ctx SpecContext) {
		exec(ctx, s, "UPDATE tenancy.memberships SET role = 'Owner', project_id = NULL WHERE uid = $1", string(viewer.UID))
		Eventually(func() (testenv.MembershipRow, error) {
			return testenv.ReadMembership(ctx, s.sql, "m.uid = $1", string(viewer.UID))
		}).WithContext(ctx).Should(MatchFields(IgnoreExtras, Fields{
			"Role":        Equal("Viewer"),
			"ProjectName": PointTo(Equal("p0")),
		}))
	})

	It("issues a new invitation when its row is deleted", func(ctx SpecContext) {
		exec(ctx, s, "DELETE FROM tenancy.invitations WHERE membership_id = $1", owner.Status.ID)
		Eventually(func(g Gomega) { g.Expect(invitationIsLive(ctx, s, owner)).To(BeTrue()) }).WithContext(ctx).Should(Succeed())
	})

	It("puts back an API key row whose role was raised, without rotating the key", func(ctx SpecContext) {
		exec(ctx, s, "UPDATE tenancy.api_keys SET role = 'Admin', project_id = gen_random_uuid() WHERE uid = $1 AND superseded_at IS NULL", string(ci.UID))
		Eventually(func() (testenv.APIKeyRow, error) {
			return testenv.ReadAPIKey(ctx, s.sql, "k.key_id = $1", ci.Status.KeyID)
		}).WithContext(ctx).Should(MatchFields(IgnoreExtras, Fields{
			"UID":          Equal(string(ci.UID)),
			"Role":         Equal("Member"),
			"ProjectID":    BeNil(),
			"SupersededAt": BeNil(),
			"RevokedAt":    BeNil(),
		}))
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1", string(ci.UID))).To(Equal(1), "no rotation")
	})

	It("recreates a deleted RoleBinding and restores the rules of a Role and a ClusterRole", func(ctx SpecContext) {
		Expect(s.kube.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "drift", Name: controllers.AdminRoleName + "s"}})).To(Succeed())
		secretsToo := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}
		role := &rbacv1.Role{}
		Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: "drift", Name: controllers.AdminRoleName}, role)).To(Succeed())
		wantRoleRules := role.Rules
		role.Rules = append(role.Rules, secretsToo)
		Expect(s.kube.Update(ctx, role)).To(Succeed())
		clusterRole := &rbacv1.ClusterRole{}
		Expect(s.kube.Get(ctx, client.ObjectKey{Name: controllers.ViewerRoleName}, clusterRole)).To(Succeed())
		wantClusterRoleRules := clusterRole.Rules
		clusterRole.Rules = append(clusterRole.Rules, secretsToo)
		Expect(s.kube.Update(ctx, clusterRole)).To(Succeed())

		Eventually(func(g Gomega) {
			binding := &rbacv1.RoleBinding{}
			g.Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: "drift", Name: controllers.AdminRoleName + "s"}, binding)).To(Succeed())
			g.Expect(binding.Subjects).To(ConsistOf(HaveField("Name", "admin@drift.example")))
			g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(role), role)).To(Succeed())
			g.Expect(role.Rules).To(Equal(wantRoleRules))
			g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(clusterRole), clusterRole)).To(Succeed())
			g.Expect(clusterRole.Rules).To(Equal(wantClusterRoleRules))
		}).WithContext(ctx).Should(Succeed())
	})

	It("restores a policy rewritten by hand and forced row-level security turned off", func(ctx SpecContext) {
		selectPolicy := func() string {
			var qual string
			Expect(s.sql.QueryRow(ctx, "SELECT qual FROM pg_policies WHERE schemaname = 'public' AND tablename = 'notes' AND policyname = 'tenancy_select'").
				Scan(&qual)).To(Succeed())
			return qual
		}
		forced := func() bool {
			var force bool
			Expect(s.sql.QueryRow(ctx, "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'public.notes'::regclass").Scan(&force)).To(Succeed())
			return force
		}
		want := selectPolicy()
		exec(ctx, s, "ALTER POLICY tenancy_select ON public.notes USING (true)")
		exec(ctx, s, "ALTER TABLE public.notes NO FORCE ROW LEVEL SECURITY")
		Expect(selectPolicy()).To(Equal("true"))
		Eventually(selectPolicy).WithContext(ctx).Should(Equal(want))
		Eventually(forced).WithContext(ctx).Should(BeTrue())
	})

	It("ends with every object Ready and every row once", func(ctx SpecContext) {
		Eventually(func(g Gomega) {
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
	})
})

func exec(ctx context.Context, s *stack, sql string, args ...any) {
	GinkgoHelper()
	_, err := s.sql.Exec(ctx, sql, args...)
	Expect(err).NotTo(HaveOccurred())
}

// invitationIsLive reports whether the membership's invitation Secret holds a token the database
// accepts (unused, unexpired).
func invitationIsLive(ctx context.Context, s *stack, m *tenancyv1.Membership) bool {
	GinkgoHelper()
	var secret corev1.Secret
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name + "-invite"}, &secret); err != nil {
		return false
	}
	hash := sha256.Sum256(secret.Data["token"])
	return countRows(ctx, s, `SELECT count(*) FROM tenancy.invitations i JOIN tenancy.memberships m ON m.id = i.membership_id
		WHERE m.uid = $1 AND i.hash = $2 AND i.used_at IS NULL AND i.expires_at > now()`, string(m.UID), hash[:]) == 1
}
