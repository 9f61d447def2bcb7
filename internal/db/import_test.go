package db_test

import (
	"crypto/rand"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"github.com/onsi/gomega/types"

	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Imported ids and keys", func() {
	var pg *db.Postgres
	actor := db.Actor{Name: "root", RequestID: "req-1"}

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "import")
	})

	organization := func(ctx SpecContext, name, id string) (db.UpsertResult, error) {
		return pg.UpsertOrganization(ctx, db.Organization{ID: id, UID: newUID(), Name: name, Tier: "Free", Namespace: name}, actor)
	}

	It("gives a new organization or project the row id asked for, and names the row that holds it already", func(ctx SpecContext) {
		id, projectID := newUID(), newUID()
		acme, err := organization(ctx, "acme", id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acme.ID).To(Equal(id))
		web, err := pg.UpsertProject(ctx, db.Project{ID: projectID, UID: newUID(), OrganizationID: acme.ID, Name: "web"}, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(web.ID).To(Equal(projectID))

		_, err = organization(ctx, "globex", id)
		var inUse *db.RowIDInUseError
		Expect(errors.As(err, &inUse)).To(BeTrue(), "got %v", err)
		Expect(*inUse).To(Equal(db.RowIDInUseError{ID: id, Holder: "organization acme"}))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.organizations WHERE name = 'globex'")).To(BeZero())

		globex, err := organization(ctx, "globex", "")
		Expect(err).NotTo(HaveOccurred())
		for _, orgID := range []string{acme.ID, globex.ID} { // the same organization, or another
			_, err = pg.UpsertProject(ctx, db.Project{ID: projectID, UID: newUID(), OrganizationID: orgID, Name: "api"}, actor)
			Expect(errors.As(err, &inUse)).To(BeTrue(), "got %v", err)
			Expect(*inUse).To(Equal(db.RowIDInUseError{ID: projectID, Holder: "project web of organization acme"}))
		}
	})

	It("replaces the orphaned row of the same name that holds the id asked for", func(ctx SpecContext) {
		id := newUID()
		_, err := organization(ctx, "acme", id) // its Organization went without its clean-up
		Expect(err).NotTo(HaveOccurred())
		again, err := organization(ctx, "acme", id)
		Expect(err).NotTo(HaveOccurred())
		Expect(again).To(Equal(db.UpsertResult{ID: id, Changed: true}))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'organization.orphan-replaced'")).To(Equal(1))

		projectID := newUID()
		project := db.Project{ID: projectID, UID: newUID(), OrganizationID: id, Name: "web"}
		_, err = pg.UpsertProject(ctx, project, actor)
		Expect(err).NotTo(HaveOccurred())
		project.UID = newUID()
		res, err := pg.UpsertProject(ctx, project, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(Equal(db.UpsertResult{ID: projectID, Changed: true}))
		Expect(testenv.ReadProject(ctx, pg.Pool(), "p.id = $1", projectID)).To(HaveField("UID", project.UID))
	})

	Describe("an old key imported under an APIKey's uid", func() {
		var acme, globex string
		in30Days := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Microsecond)

		BeforeEach(func(ctx SpecContext) {
			for name, id := range map[string]*string{"acme": &acme, "globex": &globex} {
				r, err := organization(ctx, name, "")
				Expect(err).NotTo(HaveOccurred())
				*id = r.ID
			}
		})

		// imported writes the row that `tenancy import` writes for an old key once the APIKey k
		// that replaces it exists (insertOldKeySQL in internal/importer): under k's uid, name,
		// organization and scope, with the key id imp_… as id and prefix, superseded, with its end,
		// imported. It answers the key id.
		imported := func(ctx SpecContext, k db.APIKey, role string) string {
			GinkgoHelper()
			hash, id := make([]byte, 32), make([]byte, 9)
			_, _ = rand.Read(hash)
			_, _ = rand.Read(id)
			keyID := "imp_" + apikey.Base62(id, 12)
			_, err := pg.Pool().Exec(ctx, `
				INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role,
				                              superseded_at, expires_at, imported_at)
				VALUES ($1, $2, $3, $4, $5, $5, $6, $7, now(), $8, now())`,
				k.UID, k.Name, k.OrganizationID, nullable(k.ProjectID), keyID, hash, role, in30Days)
			Expect(err).NotTo(HaveOccurred())
			return keyID
		}
		// ownKey is a key that the APIKey issues itself.
		ownKey := func(keyID string) db.NewAPIKey {
			hash := make([]byte, 32)
			_, _ = rand.Read(hash)
			return db.NewAPIKey{KeyID: keyID, Prefix: "tnc_" + keyID, Hash: hash}
		}
		// untouched is an imported row as the import wrote it.
		untouched := func(k db.APIKey, keyID, role string) types.GomegaMatcher {
			return MatchFields(IgnoreExtras, Fields{"KeyID": Equal(keyID), "UID": Equal(k.UID), "Role": Equal(role),
				"ExpiresAt": PointTo(BeTemporally("==", in30Days)), "SupersededAt": Not(BeNil()), "RevokedAt": BeNil()})
		}

		It("is never the APIKey's current key: the APIKey issues and rotates its own as before, and the old key keeps its end", func(ctx SpecContext) {
			k := db.APIKey{UID: newUID(), Name: "ci", OrganizationID: acme, Role: "Admin"}
			old := imported(ctx, k, "Admin")
			current, err := pg.CurrentAPIKey(ctx, k.UID)
			Expect(err).NotTo(HaveOccurred())
			Expect(current).To(BeNil(), "an APIKey with only an imported row has no key yet")

			first, err := pg.IssueAPIKey(ctx, k, ownKey("first"), time.Hour, "created", actor)
			Expect(err).NotTo(HaveOccurred())
			current, err = pg.CurrentAPIKey(ctx, k.UID)
			Expect(err).NotTo(HaveOccurred())
			Expect(current).To(PointTo(HaveField("ID", first.ID)))
			Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.issued'
				AND target = 'apikey/ci' AND details->>'keyID' = 'first'`)).To(Equal(1))
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.rotated'")).To(BeZero(),
				"the old key is not a previous key of the APIKey's")
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(untouched(k, old, "Admin"))

			k.Rotation = "2026-12"
			_, err = pg.IssueAPIKey(ctx, k, ownKey("second"), time.Hour, "spec.rotation changed", actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.rotated'
				AND details->>'previousKeyID' = 'first'`)).To(Equal(1))
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = 'first'")).To(HaveField("ExpiresAt",
				PointTo(BeTemporally("~", time.Now().Add(time.Hour), time.Minute))), "the APIKey's own key gets the grace period")
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(untouched(k, old, "Admin"),
				"the old key is not cut to the grace period")
		})

		It("follows the APIKey's demotions and earlier expiries, never its promotions, and is revoked with it", func(ctx SpecContext) {
			k := db.APIKey{UID: newUID(), Name: "ci", OrganizationID: acme, Role: "Admin"}
			_, err := pg.IssueAPIKey(ctx, k, ownKey("own"), time.Hour, "created", actor)
			Expect(err).NotTo(HaveOccurred())
			old := imported(ctx, k, "Admin")
			others := map[string]db.APIKey{}
			for _, o := range []db.APIKey{
				{UID: newUID(), Name: "ci", OrganizationID: globex, Role: "Admin"},   // the same name in another organization
				{UID: newUID(), Name: "deploy", OrganizationID: acme, Role: "Admin"}, // another APIKey of the organization
			} {
				others[imported(ctx, o, "Admin")] = o
			}

			earlier := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Microsecond)
			k.Role, k.ExpiresAt = "Viewer", &earlier
			changed, err := pg.SyncAPIKey(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(changed).To(BeTrue())
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(MatchFields(IgnoreExtras, Fields{
				"Role": Equal("Viewer"), "ExpiresAt": PointTo(BeTemporally("==", earlier)), "SupersededAt": Not(BeNil()), "RevokedAt": BeNil()}))

			later := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Microsecond)
			k.Role, k.ExpiresAt = "Admin", &later
			_, err = pg.SyncAPIKey(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = 'own'")).To(HaveField("Role", "Admin"))
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(MatchFields(IgnoreExtras, Fields{
				"Role": Equal("Viewer"), "ExpiresAt": PointTo(BeTemporally("==", earlier))}), "never raised, never extended")

			Expect(pg.RevokeAPIKeys(ctx, k.UID, k.Name, actor)).To(Succeed())
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1 AND revoked_at IS NULL", k.UID)).To(BeZero())
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(HaveField("RevokedAt", Not(BeNil())))
			Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.revoked'
				AND target = 'apikey/ci' AND organization_id = $1 AND details->>'keys' = '2'`, acme)).To(Equal(1), "its own key and the old key")
			for keyID, o := range others {
				Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", keyID)).To(untouched(o, keyID, "Admin"), "the other APIKeys' old keys stay as they were")
			}
		})

		It("written with a higher role than its APIKey's, is lowered to it at the APIKey's next sync", func(ctx SpecContext) {
			k := db.APIKey{UID: newUID(), Name: "ci", OrganizationID: acme, Role: "Member"}
			_, err := pg.IssueAPIKey(ctx, k, ownKey("own"), time.Hour, "created", actor)
			Expect(err).NotTo(HaveOccurred())
			old := imported(ctx, k, "Admin")
			_, err = pg.SyncAPIKey(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", old)).To(MatchFields(IgnoreExtras, Fields{
				"Role": Equal("Member"), "ExpiresAt": PointTo(BeTemporally("==", in30Days)), "RevokedAt": BeNil()}))
		})
	})
})
