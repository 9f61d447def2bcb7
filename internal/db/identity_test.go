package db_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Organization and project rows", func() {
	var pg *db.Postgres
	actor := db.Actor{Name: "alice@example.com", RequestID: "req-1"}

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "rows")
	})

	It("upserts idempotently and writes only when something changed", func(ctx SpecContext) {
		org := db.Organization{UID: newUID(), Name: "acme", DisplayName: "Acme", Tier: "Free", Namespace: "acme"}
		first, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(first.Changed).To(BeTrue())

		again, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(again).To(Equal(db.UpsertResult{ID: first.ID, Changed: false}))

		org.Tier = "Pro"
		changed, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(changed).To(Equal(db.UpsertResult{ID: first.ID, Changed: true}))

		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.organizations")).To(Equal(1))
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE actor = 'alice@example.com'
		                   AND action IN ('organization.created', 'organization.updated')`)).To(Equal(2))
	})

	It("leaves a row that already matches untouched, so a resync takes no lock", func(ctx SpecContext) {
		org := db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}
		created, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		proj := db.Project{UID: newUID(), OrganizationID: created.ID, Name: "web"}
		_, err = pg.UpsertProject(ctx, proj, actor)
		Expect(err).NotTo(HaveOccurred())

		// Somebody holds both rows locked; an unchanged upsert must not wait for them.
		locker, err := pg.Pool().Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = locker.Rollback(ctx) }()
		_, err = locker.Exec(ctx, "SELECT 1 FROM tenancy.organizations, tenancy.projects FOR UPDATE")
		Expect(err).NotTo(HaveOccurred())

		quick, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		again, err := pg.UpsertOrganization(quick, org, actor)
		Expect(err).NotTo(HaveOccurred(), "an unchanged organization upsert waited for the row lock")
		Expect(again).To(Equal(db.UpsertResult{ID: created.ID, Changed: false}))
		_, err = pg.UpsertProject(quick, proj, actor)
		Expect(err).NotTo(HaveOccurred(), "an unchanged project upsert waited for the row lock")
	})

	It("restores a row deleted by hand with its former id", func(ctx SpecContext) {
		org := db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}
		created, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.Pool().Exec(ctx, "DELETE FROM tenancy.organizations")
		Expect(err).NotTo(HaveOccurred())

		org.ID = created.ID
		restored, err := pg.UpsertOrganization(ctx, org, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(restored).To(Equal(db.UpsertResult{ID: created.ID, Changed: true}))
	})

	It("replaces the orphaned row of an earlier object of the same name", func(ctx SpecContext) {
		old, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: old.ID, Name: "web"}, actor)
		Expect(err).NotTo(HaveOccurred())

		replacement, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "acme", Tier: "Pro", Namespace: "acme"}, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(replacement.ID).NotTo(Equal(old.ID))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.organizations")).To(Equal(1))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.projects")).To(Equal(0), "the orphan's projects go with it")
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'organization.orphan-replaced'")).To(Equal(1))
	})

	It("refuses a project whose organization has no row", func(ctx SpecContext) {
		_, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: newUID(), Name: "web"}, actor)
		Expect(db.IsForeignKeyViolation(err)).To(BeTrue(), "got %v", err)
	})

	It("deletes an organization's identity rows and keeps its API keys revoked", func(ctx SpecContext) {
		uid := newUID()
		org, err := pg.UpsertOrganization(ctx, db.Organization{UID: uid, Name: "acme", Tier: "Free", Namespace: "acme"}, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: org.ID, Name: "web"}, actor)
		Expect(err).NotTo(HaveOccurred())
		newUserWithMembership(ctx, pg.Pool(), org.ID, "bob@example.com", "Owner")
		_, err = pg.Pool().Exec(ctx, `INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role)
		                              VALUES (gen_random_uuid(), 'ci', $1, 'k1', 'tnc_', sha256('k1'::bytea), 'Member')`, org.ID)
		Expect(err).NotTo(HaveOccurred())
		counts, err := pg.OrganizationCounts(ctx, org.ID)
		Expect(err).NotTo(HaveOccurred())
		Expect(counts).To(Equal(db.OrganizationCounts{Projects: 1, Members: 1}))

		Expect(pg.DeleteOrganization(ctx, uid, "acme", actor)).To(Succeed())
		Expect(pg.DeleteOrganization(ctx, uid, "acme", actor)).To(Succeed(), "deleting twice is fine")

		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.organizations")).To(Equal(0))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.projects")).To(Equal(0))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.memberships")).To(Equal(0))
		Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = 'k1'")).To(MatchFields(IgnoreExtras, Fields{
			"RevokedAt":      Not(BeNil()),
			"OrganizationID": BeNil(),
		}), "the key stays, revoked, without its organization")
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'organization.deleted'")).To(Equal(1))
	})

	It("revokes a deleted project's API keys rather than widening them to the organization", func(ctx SpecContext) {
		org, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}, actor)
		Expect(err).NotTo(HaveOccurred())
		projectUID := newUID()
		proj, err := pg.UpsertProject(ctx, db.Project{UID: projectUID, OrganizationID: org.ID, Name: "web"}, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.IssueAPIKey(ctx, db.APIKey{UID: newUID(), Name: "web-ci", OrganizationID: org.ID, ProjectID: proj.ID, Role: "Member"},
			db.NewAPIKey{KeyID: "k1", Prefix: "tnc_k1", Hash: make([]byte, 32)}, 0, "created", actor)
		Expect(err).NotTo(HaveOccurred())

		Expect(pg.DeleteProject(ctx, projectUID, "web", actor)).To(Succeed())
		Expect(testenv.ReadAPIKey(ctx, pg.Pool(), "k.key_id = 'k1'")).To(MatchFields(IgnoreExtras, Fields{
			"RevokedAt": Not(BeNil()),
			"ProjectID": PointTo(Equal(proj.ID)),
		}), "revoked, still scoped to the project")
	})

	It("reports the schema as not ready before the migrations ran", func(ctx SpecContext) {
		fresh, err := db.Connect(ctx, "postgres://127.0.0.1:1/none", GinkgoLogr)
		Expect(err).NotTo(HaveOccurred())
		defer fresh.Close()
		_, err = fresh.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "x", Tier: "Free", Namespace: "x"}, actor)
		Expect(err).To(MatchError(db.ErrNotMigrated))
		Expect(db.IsUnavailable(err)).To(BeTrue())
	})
})
