package webhooks_test

import (
	"context"
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("Tier quotas", func() {
	It("refuses the fourth project, the eleventh member and the sixth API key of a Free organization", func(ctx SpecContext) {
		org := newOrganization(ctx, "free", tenancyv1.TierFree)
		ns := org.Name
		for i := range 3 {
			Expect(admin.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}})).To(Succeed())
		}
		for i := range 10 {
			Expect(admin.Create(ctx, membership(ns, fmt.Sprintf("m%d", i), fmt.Sprintf("user%d@example.com", i), tenancyv1.RoleMember, ""))).To(Succeed())
		}
		for i := range 5 {
			Expect(admin.Create(ctx, apiKey(ns, fmt.Sprintf("k%d", i), tenancyv1.RoleViewer, ""))).To(Succeed())
		}
		// The webhooks count what the cache shows: wait until it shows all of it.
		last := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k4"}}
		eventuallyReady(ctx, last)

		Eventually(func(g Gomega) {
			err := admin.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p3"}}, client.DryRunAll)
			g.Expect(err).To(MatchError(ContainSubstring(
				"metadata.namespace: Forbidden: %s has 3 of the 3 projects its tier Free allows: delete one, or raise the Organization's spec.tier", ns)))
			err = admin.Create(ctx, membership(ns, "m10", "user10@example.com", tenancyv1.RoleMember, ""))
			g.Expect(err).To(MatchError(ContainSubstring("spec.user: Forbidden: %s has 10 of the 10 members", ns)))
			err = admin.Create(ctx, apiKey(ns, "k5", tenancyv1.RoleViewer, ""))
			g.Expect(err).To(MatchError(ContainSubstring("metadata.namespace: Forbidden: %s has 5 of the 5 API keys", ns)))
		}).WithContext(ctx).Should(Succeed())

		By("a member already counted may get a project role")
		Expect(admin.Create(ctx, membership(ns, "m0-p0", "user0@example.com", tenancyv1.RoleAdmin, "p0"))).To(Succeed())

		By("a tier that allows fewer than the organization has only warns")
		pro := org.DeepCopy()
		pro.Spec.Tier = tenancyv1.TierPro
		Expect(admin.Patch(ctx, pro, client.MergeFrom(org))).To(Succeed())
		warnings := &warningRecorder{}
		cfg := rest.CopyConfig(adminCfg)
		cfg.WarningHandlerWithContext = warnings
		warnedClient, err := client.New(cfg, client.Options{Scheme: testScheme})
		Expect(err).NotTo(HaveOccurred())
		// The webhooks read the tier from the manager's cache, which follows the patch a moment later.
		Eventually(func() error {
			return admin.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p3"}})
		}).WithContext(ctx).Should(Succeed())
		eventuallyReady(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p3"}})
		Eventually(func(g Gomega) {
			warnings.take()
			latest := &tenancyv1.Organization{}
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(org), latest)).To(Succeed())
			downgrade := latest.DeepCopy()
			downgrade.Spec.Tier = tenancyv1.TierFree
			g.Expect(warnedClient.Patch(ctx, downgrade, client.MergeFrom(latest), client.DryRunAll)).To(Succeed())
			g.Expect(warnings.take()).To(ContainElement(fmt.Sprintf(
				"%s has 4 projects, more than the 3 that tier Free allows: they stay, but new ones will be refused", ns)))
		}).WithContext(ctx).Should(Succeed())
	})
})

// warningRecorder keeps the warnings the API server sends back.
type warningRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.messages
	w.messages = nil
	return m
}

var _ = Describe("Attribution", func() {
	It("stamps who created or changed an object, normalises emails, and audits who deleted it", func(ctx SpecContext) {
		org := newOrganization(ctx, "audited", tenancyv1.TierPro)
		ns := org.Name
		Expect(admin.Create(ctx, membership(ns, "bob", orgAdmin, tenancyv1.RoleAdmin, ""))).To(Succeed())
		eventuallyReady(ctx, &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob"}})

		zed := membership(ns, "zed", "  Zed@Example.COM ", "", "")
		Expect(as(orgAdmin).Create(ctx, zed)).To(Succeed())
		Expect(zed.Spec.User).To(Equal("zed@example.com"))
		Expect(zed.Spec.Role).To(Equal(tenancyv1.RoleMember))
		Expect(zed.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, orgAdmin))
		eventuallyReady(ctx, zed)
		Expect(zed.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, orgAdmin),
			"the operator's own writes (finalizer, status) keep the requester's name")
		Expect(actorsOf(ctx, "membership.created", "membership/zed")).To(ContainElement(orgAdmin))

		By("an update that only changes the email's case keeps the stored spelling")
		recased := zed.DeepCopy()
		recased.Spec.User = "ZED@example.com"
		recased.Spec.Role = tenancyv1.RoleViewer
		Expect(admin.Patch(ctx, recased, client.MergeFrom(zed))).To(Succeed())
		Expect(recased.Spec.User).To(Equal("zed@example.com"))
		Expect(recased.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, "admin"))

		By("a deletion is audited under the name of who asked")
		Expect(as(orgAdmin).Delete(ctx, recased)).To(Succeed())
		Eventually(func() []string {
			return actorsOf(ctx, "membership.deleted", "membership/zed")
		}).WithContext(ctx).Should(ConsistOf(orgAdmin))
	})
})

// actorsOf lists the actors of the audit rows with action and target.
func actorsOf(ctx context.Context, action, target string) []string {
	GinkgoHelper()
	rows, err := sqlPool.Query(ctx, "SELECT actor FROM tenancy.audit_log WHERE action = $1 AND target = $2", action, target)
	Expect(err).NotTo(HaveOccurred())
	var actors []string
	for rows.Next() {
		var a string
		Expect(rows.Scan(&a)).To(Succeed())
		actors = append(actors, a)
	}
	Expect(rows.Err()).NotTo(HaveOccurred())
	return actors
}

var _ = Describe("With the database down", func() {
	It("keeps deciding from the cache, and refuses only what needs the database, with 503", func(ctx SpecContext) {
		// Enterprise has no quota: a counted create in a limited tier needs the database too
		// (quota_test.go).
		org := newOrganization(ctx, "offline", tenancyv1.TierEnterprise)
		ns := org.Name
		first := membership(ns, "o1", "o1@example.com", tenancyv1.RoleOwner, "")
		second := membership(ns, "o2", "o2@example.com", tenancyv1.RoleOwner, "")
		Expect(admin.Create(ctx, first)).To(Succeed())
		Expect(admin.Create(ctx, second)).To(Succeed())
		eventuallyReady(ctx, first)
		eventuallyReady(ctx, second)

		dbProxy.Cut()
		DeferCleanup(dbProxy.Restore)
		Expect(admin.Create(ctx, membership(ns, "m1", "m1@example.com", tenancyv1.RoleMember, ""))).To(Succeed())
		Expect(as("m1@example.com").Create(ctx, membership(ns, "m2", "m2@example.com", tenancyv1.RoleMember, ""))).
			To(MatchError(ContainSubstring("needs at least Admin")))
		demoted := first.DeepCopy()
		demoted.Spec.Role = tenancyv1.RoleAdmin
		err := admin.Patch(ctx, demoted, client.MergeFrom(first))
		Expect(apierrors.IsServiceUnavailable(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring("cannot confirm that %s keeps an Owner: the database is unavailable; try again", ns)))

		dbProxy.Restore()
		Eventually(func() error { return admin.Patch(ctx, demoted, client.MergeFrom(first)) }).WithContext(ctx).Should(Succeed())
	})
})

var _ = Describe("Organization namespaces", func() {
	It("keep their binding against a tenant Admin who can edit namespaces", func(ctx SpecContext) {
		org := newOrganization(ctx, "bound", tenancyv1.TierPro)
		Expect(admin.Create(ctx, membership(org.Name, "bob", orgAdmin, tenancyv1.RoleAdmin, ""))).To(Succeed())
		victim := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("victim")}}
		Expect(admin.Create(ctx, victim)).To(Succeed())

		onlyOperator := ContainSubstring("only the Tenancy operator may set, change or remove this label")
		relabel := func(name string, mutate func(map[string]string)) error {
			ns := &corev1.Namespace{}
			Expect(admin.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
			before := ns.DeepCopy()
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			mutate(ns.Labels)
			return as(orgAdmin).Patch(ctx, ns, client.MergeFrom(before))
		}
		Eventually(func() error {
			return relabel(victim.Name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = org.Name })
		}).WithContext(ctx).Should(MatchError(onlyOperator), "claiming another namespace for the organization")
		Expect(relabel(org.Name, func(l map[string]string) { delete(l, tenancyv1.OrganizationLabel) })).To(MatchError(onlyOperator))
		Expect(relabel(org.Name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = "other" })).To(MatchError(onlyOperator))
		Expect(as(orgAdmin).Create(ctx, membership(victim.Name, "x", "x@example.com", tenancyv1.RoleOwner, ""))).
			To(MatchError(ContainSubstring("metadata.namespace: Forbidden: namespace %s is bound to no organization", victim.Name)))
	})
})

var _ = Describe("Ending an organization", func() {
	It("lets its last Owner go, removed by anyone, once the Organization is being deleted", func(ctx SpecContext) {
		org := newOrganization(ctx, "ending", tenancyv1.TierPro)
		last := membership(org.Name, "olga", "olga@example.com", tenancyv1.RoleOwner, "")
		Expect(admin.Create(ctx, last)).To(Succeed())
		Expect(admin.Create(ctx, membership(org.Name, "bob", orgAdmin, tenancyv1.RoleAdmin, ""))).To(Succeed())
		eventuallyReady(ctx, last)
		Expect(admin.Delete(ctx, last)).To(MatchError(ContainSubstring("would have no Owner left")))

		// As the namespace controller does when it empties a deleted namespace: no tenancy role.
		Expect(admin.Delete(ctx, org)).To(Succeed())
		Eventually(func() error { return as(orgAdmin).Delete(ctx, last) }).WithContext(ctx).Should(Succeed())
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKeyFromObject(last), last)
		}).WithContext(ctx).Should(MatchError(apierrors.IsNotFound, "IsNotFound"))
	})
})

var _ = Describe("A tenant's manifests applied in one pass", func() {
	It("are accepted in file order, before the operator has bound the namespace, and converge", func(ctx SpecContext) {
		name := uniqueName("onepass")
		manifests := []tenancyv1.Object{
			&tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}},
			&tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "web"}},
			membership(name, "owner", "owner@example.com", tenancyv1.RoleOwner, ""),
			membership(name, "dev", "dev@example.com", tenancyv1.RoleMember, "web"),
			apiKey(name, "ci", tenancyv1.RoleMember, "web"),
		}
		Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		for _, obj := range manifests {
			Expect(admin.Create(ctx, obj)).To(Succeed(), "%T %s", obj, obj.GetName())
		}
		for _, obj := range manifests {
			eventuallyReady(ctx, obj)
		}
	})
})

var _ = Describe("The finalizer", func() {
	It("stays until the operator has cleaned up, whatever a tenant Admin patches", func(ctx SpecContext) {
		org := newOrganization(ctx, "final", tenancyv1.TierPro)
		Expect(admin.Create(ctx, membership(org.Name, "bob", orgAdmin, tenancyv1.RoleAdmin, ""))).To(Succeed())
		key := apiKey(org.Name, "ci", tenancyv1.RoleAdmin, "")
		Expect(admin.Create(ctx, key)).To(Succeed())
		eventuallyReady(ctx, key)
		Expect(key.Finalizers).To(ContainElement(tenancyv1.Finalizer))

		stripped := key.DeepCopy()
		stripped.Finalizers = nil
		Expect(as(orgAdmin).Patch(ctx, stripped, client.MergeFrom(key))).To(MatchError(ContainSubstring(
			"metadata.finalizers: Forbidden: only the operator removes tenancy.dev/finalizer, once it has cleaned up: delete the object instead")))

		By("deleting it instead revokes the key")
		Expect(as(orgAdmin).Delete(ctx, key)).To(Succeed())
		Eventually(func() error { return admin.Get(ctx, client.ObjectKeyFromObject(key), key) }).
			WithContext(ctx).Should(MatchError(apierrors.IsNotFound, "IsNotFound"))
		var revoked int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1 AND revoked_at IS NOT NULL", key.UID).Scan(&revoked)).To(Succeed())
		Expect(revoked).To(Equal(1))
		Expect(actorsOf(ctx, "apikey.revoked", "apikey/ci")).To(ContainElement(orgAdmin))
	})
})

var _ = Describe("The finalizer of a new object", func() {
	It("comes with its create, and a later server-side apply without it keeps it", func(ctx SpecContext) {
		org := newOrganization(ctx, "applied", tenancyv1.TierPro)
		manifest := func(displayName string) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": tenancyv1.GroupVersion.String(), "kind": "Project",
				"metadata": map[string]any{"name": "web", "namespace": org.Name},
				"spec":     map[string]any{"displayName": displayName},
			}}
		}
		applied := manifest("Web")
		Expect(admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(applied), client.FieldOwner("gitops"))).To(Succeed())
		Expect(applied.GetFinalizers()).To(ConsistOf(tenancyv1.Finalizer), "the create's own response holds it: no controller write came first")
		for _, entry := range applied.GetManagedFields() {
			Expect(entry.FieldsV1.GetRawString()).NotTo(ContainSubstring("f:finalizers"), "%s must not own the finalizer", entry.Manager)
		}
		eventuallyReady(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: "web"}})

		By("applying the manifest again, changed, leaves the finalizer alone")
		reapplied := manifest("Web shop")
		Expect(admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(reapplied), client.FieldOwner("gitops"))).To(Succeed())
		Expect(reapplied.GetFinalizers()).To(ConsistOf(tenancyv1.Finalizer))
		Expect(reapplied.GetGeneration()).To(Equal(int64(2)))
	})
})
