package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Project controller", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("projorg")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
	})

	newProject := func(namespace, name string) *tenancyv1.Project {
		return &tenancyv1.Project{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec:       tenancyv1.ProjectSpec{DisplayName: "Project " + name},
		}
	}

	It("creates, updates and deletes the project's row", func(ctx SpecContext) {
		proj := newProject(org.Name, "web")
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyReady(ctx, proj)
		Expect(proj.Status.OrganizationID).To(Equal(org.Status.ID))
		Expect(projectRow(ctx, proj.Status.ID)).To(MatchAllFields(Fields{
			"ID":             Equal(proj.Status.ID),
			"UID":            Equal(string(proj.UID)),
			"OrganizationID": Equal(org.Status.ID),
			"Name":           Equal("web"),
			"DisplayName":    Equal("Project web"),
		}))
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Status.Projects).To(Equal(int32(1)))
		}).WithContext(ctx).Should(Succeed())

		Expect(patchSpec(ctx, proj, func(p *tenancyv1.Project) { p.Spec.DisplayName = "Web shop" })).To(Succeed())
		eventuallyReady(ctx, proj)
		Expect(projectRow(ctx, proj.Status.ID)).To(HaveField("DisplayName", "Web shop"))

		Expect(k8sClient.Delete(ctx, proj)).To(Succeed())
		eventuallyGone(ctx, proj)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE uid = $1", string(proj.UID))).To(Equal(0))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'project.deleted' AND organization_id = $1",
			org.Status.ID)).To(Equal(1))
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Status.Projects).To(BeZero())
		}).WithContext(ctx).Should(Succeed())
	})

	It("restores its row when someone changes or deletes it by hand", func(ctx SpecContext) {
		proj := newProject(org.Name, "api")
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyReady(ctx, proj)

		_, err := sqlPool.Exec(ctx, "UPDATE tenancy.projects SET display_name = 'hacked' WHERE id = $1", proj.Status.ID)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (testenv.ProjectRow, error) {
			return projectRow(ctx, proj.Status.ID)
		}).WithContext(ctx).Should(HaveField("DisplayName", "Project api"))

		_, err = sqlPool.Exec(ctx, "DELETE FROM tenancy.projects WHERE id = $1", proj.Status.ID)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (testenv.ProjectRow, error) {
			return projectRow(ctx, proj.Status.ID)
		}).WithContext(ctx).Should(HaveField("UID", string(proj.UID)), "restored with the same id")
	})

	It("stalls, naming the namespace, when no organization owns its namespace", func(ctx SpecContext) {
		nsName := uniqueName("stray")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}})).To(Succeed())
		proj := newProject(nsName, "lost")
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())

		cond := eventuallyCondition(ctx, proj, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceNotBoundReason)
		Expect(cond.Message).To(ContainSubstring("Namespace " + nsName + " is bound to no organization"))
		eventuallyCondition(ctx, proj, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.NamespaceNotBoundReason)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE uid = $1", string(proj.UID))).To(Equal(0))

		// An Organization that adopts the namespace unblocks the project without any retry by hand.
		adopter := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("rescuer")},
			Spec: tenancyv1.OrganizationSpec{Namespace: nsName}}
		Expect(k8sClient.Create(ctx, adopter)).To(Succeed())
		eventuallyReady(ctx, adopter)
		eventuallyReady(ctx, proj)
		Expect(proj.Status.OrganizationID).To(Equal(adopter.Status.ID))
		// Events are sent in the background: give a wrong one time to arrive.
		Consistently(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(nsName))).To(Succeed())
			g.Expect(events.Items).NotTo(ContainElement(HaveField("Reason", "DriftRestored")),
				"a first row after a stall is no drift")
		}).WithContext(ctx).WithTimeout(3 * time.Second).Should(Succeed())
	})

	It("does not trust an organization label on a namespace the organization does not name", func(ctx SpecContext) {
		nsName := uniqueName("forged")
		// The admission policy keeps people from setting the label; this is the second line of
		// defence, for clusters where the policy is missing.
		Expect(managerClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: nsName, Labels: map[string]string{tenancyv1.OrganizationLabel: org.Name},
		}})).To(Succeed())
		proj := newProject(nsName, "intruder")
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyCondition(ctx, proj, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceNotBoundReason)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE uid = $1", string(proj.UID))).To(Equal(0))
	})

	It("converges when a tenant's namespace, organization and project are applied in one pass", func(ctx SpecContext) {
		name := uniqueName("gitops")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		tenant := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		Expect(k8sClient.Create(ctx, tenant)).To(Succeed())
		projects := []*tenancyv1.Project{newProject(name, "a"), newProject(name, "b"), newProject(name, "c")}
		for _, p := range projects {
			Expect(k8sClient.Create(ctx, p)).To(Succeed())
		}
		eventuallyReady(ctx, tenant)
		for _, p := range projects {
			eventuallyReady(ctx, p)
		}
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.projects WHERE organization_id = $1", tenant.Status.ID)).To(Equal(3))
	})
})
