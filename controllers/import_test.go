package controllers_test

import (
	"context"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// What `tenancy import` relies on: the old system's ids kept, and its API keys handed to the
// APIKeys of their names.
var _ = Describe("Imported tenants", func() {
	withRowID := func(obj client.Object, id string) {
		obj.SetAnnotations(map[string]string{tenancyv1.RowIDAnnotation: id})
	}

	It("keeps the old system's ids: an Organization and a Project get the row ids their annotations ask for", func(ctx SpecContext) {
		orgID, projectID := uuid.NewString(), uuid.NewString()
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("imported")}}
		withRowID(org, orgID)
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		Expect(org.Status.ID).To(Equal(orgID))
		Expect(organizationRow(ctx, "o.id = $1", orgID)).To(HaveField("UID", string(org.UID)))

		proj := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: org.Name}}
		withRowID(proj, projectID)
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyReady(ctx, proj)
		Expect(proj.Status.ID).To(Equal(projectID))
		Expect(projectRow(ctx, projectID)).To(MatchFields(IgnoreExtras, Fields{
			"UID":            Equal(string(proj.UID)),
			"OrganizationID": Equal(orgID),
		}))

		By("the annotation never re-keys a row that has an id")
		Expect(patchSpec(ctx, org, func(o *tenancyv1.Organization) { withRowID(o, uuid.NewString()) })).To(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Status.ID).To(Equal(orgID))
			g.Expect(organizationRow(ctx, "o.uid = $1", string(org.UID))).To(HaveField("ID", orgID))
		}).WithContext(ctx).WithTimeout(2 * resyncPeriod).Should(Succeed())

		By("a row deleted by hand comes back with its id, not the annotation's")
		_, err := sqlPool.Exec(ctx, "DELETE FROM tenancy.projects WHERE id = $1", projectID)
		Expect(err).NotTo(HaveOccurred())
		Expect(patchSpec(ctx, proj, func(p *tenancyv1.Project) { withRowID(p, uuid.NewString()) })).To(Succeed())
		Eventually(func() (testenv.ProjectRow, error) {
			return projectRow(ctx, projectID)
		}).WithContext(ctx).Should(HaveField("UID", string(proj.UID)))
	})

	It("stalls an Organization whose row id another organization's row has, until it asks for another", func(ctx SpecContext) {
		id := uuid.NewString()
		first := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("first")}}
		withRowID(first, id)
		Expect(k8sClient.Create(ctx, first)).To(Succeed())
		eventuallyReady(ctx, first)

		second := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("second")}}
		withRowID(second, id)
		Expect(k8sClient.Create(ctx, second)).To(Succeed())
		stall := eventuallyCondition(ctx, second, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.RowIDInUseReason)
		Expect(stall.Message).To(Equal("Row id " + id + " is already the id of organization " + first.Name +
			": a platform admin may set another tenancy.dev/row-id, or remove it for a new id"))
		Expect(second.Status.ID).To(BeEmpty())
		ready := eventuallyCondition(ctx, second, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.RowIDInUseReason)
		Expect(ready.Message).To(Equal(stall.Message))
		Expect(kstatusOf(second)).To(Equal(kstatus.FailedStatus))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.organizations WHERE uid = $1", string(second.UID))).To(BeZero())
		Expect(organizationRow(ctx, "o.id = $1", id)).To(HaveField("UID", string(first.UID)), "the first keeps its row")

		By("another id un-stalls it")
		otherID := uuid.NewString()
		Expect(patchSpec(ctx, second, func(o *tenancyv1.Organization) { withRowID(o, otherID) })).To(Succeed())
		eventuallyReady(ctx, second)
		Expect(second.Status.ID).To(Equal(otherID))
	})

	Describe("API keys", func() {
		var org, other *tenancyv1.Organization

		BeforeEach(func(ctx SpecContext) {
			org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("keysimported")}}
			other = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("keysother")}}
			Expect(k8sClient.Create(ctx, org)).To(Succeed())
			Expect(k8sClient.Create(ctx, other)).To(Succeed())
			eventuallyReady(ctx, org)
			eventuallyReady(ctx, other)
		})

		expires := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)

		// importKey writes what `tenancy import` writes for a key of the old system, and answers
		// its hash.
		importKey := func(ctx context.Context, orgID, name, keyID, oldKey string) []byte {
			GinkgoHelper()
			hash := sha256Of([]byte(oldKey))
			_, err := sqlPool.Exec(ctx, `
				INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role, expires_at, superseded_at, imported_at)
				VALUES ($1, $2, $3, $4, 'sk_live_', $5, 'Admin', $6, now(), now())`,
				uuid.NewString(), name, orgID, keyID, hash, expires)
			Expect(err).NotTo(HaveOccurred())
			return hash
		}
		// validates is authd's lookup of a key by its hash: a row not revoked, not expired, of an
		// organization that exists.
		validates := func(ctx context.Context, hash []byte) bool {
			GinkgoHelper()
			return countRows(ctx, `SELECT count(*) FROM tenancy.api_keys k JOIN tenancy.organizations o ON o.id = k.organization_id
				WHERE k.hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())`, hash) == 1
		}

		It("hands the imported keys of its name and organization to an APIKey, which demotes and revokes them", func(ctx SpecContext) {
			oldKey, otherOrgsKey := "sk_live_"+uuid.NewString(), "sk_live_"+uuid.NewString()
			keyID, otherKeyID := "old-"+uuid.NewString()[:8], "old-"+uuid.NewString()[:8]
			hash := importKey(ctx, org.Status.ID, "billing", keyID, oldKey)
			otherHash := importKey(ctx, other.Status.ID, "billing", otherKeyID, otherOrgsKey)
			otherUID := apiKeyUID(ctx, otherKeyID)

			k := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: org.Name},
				Spec: tenancyv1.APIKeySpec{Role: tenancyv1.RoleAdmin}}
			Expect(k8sClient.Create(ctx, k)).To(Succeed())
			eventuallyReady(ctx, k)
			Eventually(func() string { return apiKeyUID(ctx, keyID) }).WithContext(ctx).Should(Equal(string(k.UID)))
			Expect(k.Status.KeyID).NotTo(BeEmpty())
			Expect(k.Status.KeyID).NotTo(Equal(keyID), "the APIKey gets a key of its own")
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(MatchFields(IgnoreExtras, Fields{
				"Role":         Equal("Admin"),
				"ExpiresAt":    PointTo(BeTemporally("==", expires)),
				"SupersededAt": Not(BeNil()),
				"RevokedAt":    BeNil(),
			}))
			Expect(validates(ctx, hash)).To(BeTrue(), "the old key works on until its expiry")
			Expect(countRows(ctx, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.imported_key_adopted'
				AND organization_id = $1 AND details->'keyIDs' = jsonb_build_array($2::text)`, org.Status.ID, keyID)).To(Equal(1))
			Eventually(func(g Gomega) {
				var events corev1.EventList
				g.Expect(k8sClient.List(ctx, &events, client.InNamespace(org.Name))).To(Succeed())
				g.Expect(events.Items).To(ContainElement(SatisfyAll(HaveField("InvolvedObject.UID", k.UID),
					HaveField("Reason", "ImportedKeysAdopted"), HaveField("Message", ContainSubstring(keyID)))))
			}).WithContext(ctx).Should(Succeed())
			Expect(apiKeyUID(ctx, otherKeyID)).To(Equal(otherUID), "another organization's key of the same name is not taken")

			By("a demotion of the APIKey reaches the imported key")
			Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Role = tenancyv1.RoleViewer })).To(Succeed())
			Eventually(func() (testenv.APIKeyRow, error) {
				return apiKeyRow(ctx, "k.key_id = $1", keyID)
			}).WithContext(ctx).Should(HaveField("Role", "Viewer"))

			By("and a promotion does not")
			Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Role = tenancyv1.RoleAdmin })).To(Succeed())
			eventuallyReady(ctx, k)
			Eventually(func() (testenv.APIKeyRow, error) {
				return apiKeyRow(ctx, "k.key_id = $1", k.Status.KeyID)
			}).WithContext(ctx).Should(HaveField("Role", "Admin"))
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(HaveField("Role", "Viewer"))

			By("deleting the APIKey revokes the imported key with its own")
			Expect(k8sClient.Delete(ctx, k)).To(Succeed())
			eventuallyGone(ctx, k)
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(HaveField("RevokedAt", Not(BeNil())))
			Expect(validates(ctx, hash)).To(BeFalse())
			Expect(validates(ctx, otherHash)).To(BeTrue(), "another organization's key of the same name lives on")
		})
	})
})

// apiKeyUID reads the uid of the key row whose key id is keyID.
func apiKeyUID(ctx context.Context, keyID string) string {
	GinkgoHelper()
	row, err := apiKeyRow(ctx, "k.key_id = $1", keyID)
	Expect(err).NotTo(HaveOccurred())
	return row.UID
}
