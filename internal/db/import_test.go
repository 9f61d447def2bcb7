package db_test

import (
	"crypto/rand"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"

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

	Describe("an APIKey named like imported keys", func() {
		var acme, globex, web string
		in30Days := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Microsecond)

		BeforeEach(func(ctx SpecContext) {
			for name, id := range map[string]*string{"acme": &acme, "globex": &globex} {
				r, err := organization(ctx, name, "")
				Expect(err).NotTo(HaveOccurred())
				*id = r.ID
			}
			r, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: acme, Name: "web"}, actor)
			Expect(err).NotTo(HaveOccurred())
			web = r.ID
		})

		// imported writes a key row as `tenancy import` does, and answers its key id.
		imported := func(ctx SpecContext, org, project, name, role string, revoked bool) string {
			GinkgoHelper()
			hash := make([]byte, 32)
			_, _ = rand.Read(hash)
			keyID := "old" + newUID()[:8]
			_, err := pg.Pool().Exec(ctx, `
				INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role,
				                              expires_at, superseded_at, imported_at, revoked_at)
				VALUES (gen_random_uuid(), $1, $2, $3, $4, 'old_', $5, $6, $7, now(), now(), CASE WHEN $8 THEN now() END)`,
				name, org, nullable(project), keyID, hash, role, in30Days, revoked)
			Expect(err).NotTo(HaveOccurred())
			return keyID
		}

		It("takes over the live imported keys of its organization, scope and name, demoted to its role, and only those", func(ctx SpecContext) {
			first, second := imported(ctx, acme, "", "ci", "Admin", false), imported(ctx, acme, "", "ci", "Viewer", false)
			others := []string{
				imported(ctx, globex, "", "ci", "Admin", false),   // another organization
				imported(ctx, acme, web, "ci", "Admin", false),    // another scope
				imported(ctx, acme, "", "deploy", "Admin", false), // another name
				imported(ctx, acme, "", "ci", "Admin", true),      // revoked
			}
			_, err := pg.Pool().Exec(ctx, `
				INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role, superseded_at, expires_at)
				VALUES (gen_random_uuid(), 'ci', $1, 'notimported', 'x', $2, 'Admin', now(), $3)`, acme, make([]byte, 32), in30Days)
			Expect(err).NotTo(HaveOccurred())
			others = append(others, "notimported") // written by Tenancy, not imported

			k := db.APIKey{UID: newUID(), Name: "ci", OrganizationID: acme, Role: "Member"}
			adopted, err := pg.AdoptImportedAPIKeys(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(adopted).To(ConsistOf(first, second))
			Expect(testenv.ReadAPIKeys(ctx, pg.Pool(), "k.key_id = ANY($1)", []string{first, second})).To(ConsistOf(
				MatchFields(IgnoreExtras, Fields{"KeyID": Equal(first), "UID": Equal(k.UID), "Role": Equal("Member"),
					"ExpiresAt": PointTo(BeTemporally("==", in30Days)), "RevokedAt": BeNil()}),
				MatchFields(IgnoreExtras, Fields{"KeyID": Equal(second), "UID": Equal(k.UID), "Role": Equal("Viewer")}),
			), "never promoted")
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.api_keys WHERE key_id = ANY($1) AND uid = $2", others, k.UID)).To(BeZero())
			Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.imported_key_adopted'
				AND target = 'apikey/ci' AND organization_id = $1 AND details->'keyIDs' @> to_jsonb($2::text[])`, acme, []string{first, second})).To(Equal(1))

			again, err := pg.AdoptImportedAPIKeys(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(again).To(BeEmpty(), "nothing more to take, nothing written")
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.imported_key_adopted'")).To(Equal(1))

			By("from then on they follow the APIKey, as keys in their grace period do")
			earlier := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Microsecond)
			k.Role, k.ExpiresAt = "Viewer", &earlier
			_, err = pg.SyncAPIKey(ctx, k, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(testenv.ReadAPIKeys(ctx, pg.Pool(), "k.key_id = ANY($1)", []string{first, second})).To(HaveEach(SatisfyAll(
				HaveField("Role", "Viewer"), HaveField("ExpiresAt", PointTo(BeTemporally("==", earlier))))))
			Expect(pg.RevokeAPIKeys(ctx, k.UID, k.Name, actor)).To(Succeed())
			Expect(testenv.ReadAPIKeys(ctx, pg.Pool(), "k.key_id = ANY($1)", []string{first, second})).To(HaveEach(HaveField("RevokedAt", Not(BeNil()))))
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.api_keys WHERE key_id = ANY($1) AND revoked_at IS NULL", others[:3])).To(Equal(3),
				"the others stay as they were")
		})

		It("takes over a project's imported keys only for an APIKey of that project", func(ctx SpecContext) {
			scoped := imported(ctx, acme, web, "ci", "Member", false)
			adopted, err := pg.AdoptImportedAPIKeys(ctx, db.APIKey{UID: newUID(), Name: "ci", OrganizationID: acme, ProjectID: web, Role: "Admin"}, actor)
			Expect(err).NotTo(HaveOccurred())
			Expect(adopted).To(Equal([]string{scoped}))
			Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = $1", scoped)).To(HaveField("Role", "Member"), "an imported key is never promoted")
		})
	})
})
