package db_test

import (
	"context"
	"sync"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
)

var _ = Describe("Admission records", func() {
	var pg *db.Postgres

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "admission")
	})

	removal := func(org, uid string, owners []string, dryRun bool) db.OwnerRemoval {
		return db.OwnerRemoval{
			AdmissionRecord: db.AdmissionRecord{ObjectUID: uid, Namespace: org, Target: "membership/" + uid[:8], RequestedBy: "ops"},
			Owners:          owners,
			DryRun:          dryRun,
		}
	}

	It("admits the removal of an Owner only while another one remains, counting earlier admissions", func(ctx SpecContext) {
		a, b, c := newUID(), newUID(), newUID()

		admitted, err := pg.AdmitOwnerRemoval(ctx, removal("acme", a, []string{a}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeFalse(), "the last Owner stays")

		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", a, []string{a, b}, true))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeTrue())
		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", b, []string{a, b}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeTrue(), "a dry run records nothing, so b may still go")

		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", a, []string{a, b}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeFalse(), "b's admitted removal counts although a stale cache still lists b")

		By("a later deletion of the demoted b does not erase its removal")
		Expect(pg.RecordDeletion(ctx, db.AdmissionRecord{ObjectUID: b, Namespace: "acme", Target: "membership/b", RequestedBy: "carol"})).To(Succeed())
		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", a, []string{a, b}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeFalse())

		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("other", c, []string{c, newUID()}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeTrue(), "organizations do not share records")

		By("a removal older than the window no longer counts")
		_, err = pg.Pool().Exec(ctx, "UPDATE tenancy.admission_records SET admitted_at = now() - interval '1 minute' WHERE object_uid = $1", b)
		Expect(err).NotTo(HaveOccurred())
		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", a, []string{a, b}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeTrue())
	})

	It("serializes two replicas removing the last two Owners at once", func(ctx SpecContext) {
		// Two pools stand for two manager replicas whose caches both still show both Owners.
		other, err := db.Connect(ctx, pg.Pool().Config().ConnString(), logr.Discard())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(other.Close)
		Expect(other.Start(ctx)).To(Succeed())

		for range 20 {
			a, b := newUID(), newUID()
			org := "org-" + a[:8]
			var wg sync.WaitGroup
			results := make([]bool, 2)
			for i, replica := range []*db.Postgres{pg, other} {
				uid := []string{a, b}[i]
				wg.Go(func() {
					defer GinkgoRecover()
					admitted, err := replica.AdmitOwnerRemoval(ctx, removal(org, uid, []string{a, b}, false))
					Expect(err).NotTo(HaveOccurred())
					results[i] = admitted
				})
			}
			wg.Wait()
			Expect(results).To(ConsistOf(true, false))
		}
	})

	It("names who asked for a deletion in the audit row of the clean-up", func(ctx SpecContext) {
		org, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}, db.Actor{Name: "ops"})
		Expect(err).NotTo(HaveOccurred())
		projectUID := newUID()
		_, err = pg.UpsertProject(ctx, db.Project{UID: projectUID, OrganizationID: org.ID, Name: "web"}, db.Actor{Name: "ops"})
		Expect(err).NotTo(HaveOccurred())

		Expect(pg.RecordDeletion(ctx, db.AdmissionRecord{ObjectUID: projectUID, Namespace: "acme", Target: "project/web", RequestedBy: "bob@example.com"})).To(Succeed())
		Expect(pg.DeleteProject(ctx, projectUID, "web", db.Actor{Name: "system:tenancy:project"})).To(Succeed())
		Expect(actorOf(ctx, pg, "project.deleted")).To(Equal("bob@example.com"))

		By("without a record, the controller's actor stays")
		Expect(pg.DeleteOrganization(ctx, "00000000-0000-0000-0000-000000000000", "ghost", db.Actor{Name: "x"})).To(Succeed())
		orgUID := newUID()
		_, err = pg.UpsertOrganization(ctx, db.Organization{UID: orgUID, Name: "beta", Tier: "Free", Namespace: "beta"}, db.Actor{Name: "ops"})
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.DeleteOrganization(ctx, orgUID, "beta", db.Actor{Name: "carol@example.com"})).To(Succeed())
		Expect(actorOf(ctx, pg, "organization.deleted")).To(Equal("carol@example.com"))
	})
})

func actorOf(ctx context.Context, pg *db.Postgres, action string) string {
	GinkgoHelper()
	var actor string
	Expect(pg.Pool().QueryRow(ctx, "SELECT actor FROM tenancy.audit_log WHERE action = $1", action).Scan(&actor)).To(Succeed())
	return actor
}
