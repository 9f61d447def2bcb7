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
	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// What `tenancy import` relies on: the old system's ids kept, and its old API keys working as
// superseded keys of the APIKeys that replace them.
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

		// readyKey creates the APIKey billing of role Admin in o's namespace, as the import applies
		// it, and waits until it is Ready with its own key.
		readyKey := func(ctx context.Context, o *tenancyv1.Organization) *tenancyv1.APIKey {
			GinkgoHelper()
			k := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: o.Name},
				Spec: tenancyv1.APIKeySpec{Role: tenancyv1.RoleAdmin}}
			Expect(k8sClient.Create(ctx, k)).To(Succeed())
			eventuallyReady(ctx, k)
			Expect(k.Status.KeyID).NotTo(BeEmpty())
			return k
		}
		// importKey writes the row that `tenancy import` writes for an old key once the APIKey k
		// that replaces it exists (insertOldKeySQL in internal/importer): under k's uid, name,
		// organization and scope, with the key id imp_… as id and prefix, superseded, with its end,
		// imported. It answers the key id and the hash.
		importKey := func(ctx context.Context, k *tenancyv1.APIKey, o *tenancyv1.Organization, role string) (string, []byte) {
			GinkgoHelper()
			id := uuid.New()
			keyID := "imp_" + apikey.Base62(id[:9], 12)
			hash := sha256Of([]byte("sk_live_" + uuid.NewString()))
			_, err := sqlPool.Exec(ctx, `
				INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role,
				                              superseded_at, expires_at, imported_at)
				VALUES ($1, $2, $3, NULL, $4, $4, $5, $6, now(), $7, now())`,
				string(k.UID), k.Name, o.Status.ID, keyID, hash, role, expires)
			Expect(err).NotTo(HaveOccurred())
			return keyID, hash
		}
		// secretKeyID reads the key id in k's Secret.
		secretKeyID := func(ctx context.Context, g Gomega, k *tenancyv1.APIKey) string {
			secret := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.SecretNameOrDefault()}, secret)).To(Succeed())
			return string(secret.Data[tenancyv1.APIKeyIDSecretKey])
		}
		// authdRole is authd's lookup of an old key by its hash (apiKeyByHash for an imported key):
		// a row not revoked, not expired, of an organization that exists, imported. It answers
		// the role the key acts with, "" when the key does not work.
		authdRole := func(ctx context.Context, hash []byte) string {
			GinkgoHelper()
			var role string
			Expect(sqlPool.QueryRow(ctx, `SELECT coalesce((
				SELECT k.role::text FROM tenancy.api_keys k JOIN tenancy.organizations o ON o.id = k.organization_id
				WHERE k.hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
				  AND k.imported_at IS NOT NULL), '')`, hash).Scan(&role)).To(Succeed())
			return role
		}

		It("keeps an old key written under an APIKey's uid working beside the APIKey's own key, which is issued and rotated as before", func(ctx SpecContext) {
			k := readyKey(ctx, org)
			ownKeyID := k.Status.KeyID
			keyID, hash := importKey(ctx, k, org, "Admin")
			Expect(ownKeyID).NotTo(HavePrefix("imp_"), "the APIKey's key is a Tenancy key of its own")
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(MatchFields(IgnoreExtras, Fields{
				"UID":          Equal(string(k.UID)),
				"Role":         Equal("Admin"),
				"ExpiresAt":    PointTo(BeTemporally("==", expires)),
				"SupersededAt": Not(BeNil()),
				"RevokedAt":    BeNil(),
			}))
			Expect(authdRole(ctx, hash)).To(Equal("Admin"), "the old key works until its date")

			By("the old key is never the APIKey's current key, and the APIKey's reconciles leave both as they are")
			Consistently(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(k), k)).To(Succeed())
				g.Expect(k.Status.KeyID).To(Equal(ownKeyID))
				g.Expect(secretKeyID(ctx, g, k)).To(Equal(ownKeyID))
				g.Expect(apiKeyRow(ctx, "k.uid = $1 AND k.superseded_at IS NULL", string(k.UID))).To(HaveField("KeyID", ownKeyID))
				g.Expect(authdRole(ctx, hash)).To(Equal("Admin"))
			}).WithContext(ctx).WithTimeout(2 * resyncPeriod).Should(Succeed())

			By("a rotation supersedes the APIKey's own key, not the old key, whose end stays its own")
			Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Rotation = "2026-12" })).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(k), k)).To(Succeed())
				g.Expect(k.Status.KeyID).NotTo(Equal(ownKeyID))
				g.Expect(secretKeyID(ctx, g, k)).To(Equal(k.Status.KeyID))
			}).WithContext(ctx).Should(Succeed())
			Expect(k.Status.KeyID).NotTo(HavePrefix("imp_"))
			Expect(countRows(ctx, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.rotated'
				AND organization_id = $1 AND details->>'previousKeyID' = $2`, org.Status.ID, ownKeyID)).To(Equal(1))
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(MatchFields(IgnoreExtras, Fields{
				"UID":          Equal(string(k.UID)),
				"ExpiresAt":    PointTo(BeTemporally("==", expires)),
				"SupersededAt": Not(BeNil()),
				"RevokedAt":    BeNil(),
			}), "not cut to the rotation's grace period")
			Expect(authdRole(ctx, hash)).To(Equal("Admin"))
		})

		It("lowers the old key with its APIKey's demotion, never raises it again, and revokes it with the APIKey's deletion", func(ctx SpecContext) {
			k, otherK := readyKey(ctx, org), readyKey(ctx, other)
			keyID, hash := importKey(ctx, k, org, "Admin")
			otherKeyID, otherHash := importKey(ctx, otherK, other, "Admin")

			By("a demotion of the APIKey reaches the old key")
			Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Role = tenancyv1.RoleViewer })).To(Succeed())
			Eventually(func() (testenv.APIKeyRow, error) {
				return apiKeyRow(ctx, "k.key_id = $1", keyID)
			}).WithContext(ctx).Should(HaveField("Role", "Viewer"))
			Expect(authdRole(ctx, hash)).To(Equal("Viewer"))

			By("a promotion does not")
			Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Role = tenancyv1.RoleAdmin })).To(Succeed())
			eventuallyReady(ctx, k)
			Eventually(func() (testenv.APIKeyRow, error) {
				return apiKeyRow(ctx, "k.key_id = $1", k.Status.KeyID)
			}).WithContext(ctx).Should(HaveField("Role", "Admin"))
			Consistently(func() string { return authdRole(ctx, hash) }).WithContext(ctx).WithTimeout(2*resyncPeriod).
				Should(Equal("Viewer"), "the resyncs never raise it either")

			By("deleting the APIKey revokes the old key with its own")
			Expect(k8sClient.Delete(ctx, k)).To(Succeed())
			eventuallyGone(ctx, k)
			Expect(apiKeyRow(ctx, "k.key_id = $1", keyID)).To(HaveField("RevokedAt", Not(BeNil())))
			Expect(authdRole(ctx, hash)).To(BeEmpty())
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1 AND revoked_at IS NULL", string(k.UID))).To(BeZero())

			By("the APIKey of the same name in another organization and its old key are left alone")
			Expect(apiKeyRow(ctx, "k.key_id = $1", otherKeyID)).To(MatchFields(IgnoreExtras, Fields{
				"UID":       Equal(string(otherK.UID)),
				"Role":      Equal("Admin"),
				"RevokedAt": BeNil(),
			}))
			Expect(authdRole(ctx, otherHash)).To(Equal("Admin"))
		})
	})
})
