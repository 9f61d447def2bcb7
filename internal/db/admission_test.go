package db_test

import (
	"context"
	"fmt"
	"slices"
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

	It("does not count an Owner whose account is being deleted as the one who remains", func(ctx SpecContext) {
		f := seedIdentities(ctx, pg)
		ownerUID := func(email string) string {
			GinkgoHelper()
			var user, uid string
			Expect(pg.Pool().QueryRow(ctx, "INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id", email).Scan(&user)).To(Succeed())
			Expect(pg.Pool().QueryRow(ctx, `INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
				VALUES (gen_random_uuid(), $1, $2, 'Owner', 'Active') RETURNING uid::text`, f.orgA, user).Scan(&uid)).To(Succeed())
			return uid
		}
		staying, leaving := ownerUID("staying@acme.test"), ownerUID("leaving@acme.test")
		_, err := pg.Pool().Exec(ctx, "UPDATE tenancy.users SET deletion_requested_at = now() WHERE email = 'leaving@acme.test'")
		Expect(err).NotTo(HaveOccurred())
		admitted, err := pg.AdmitOwnerRemoval(ctx, removal("acme", staying, []string{staying, leaving}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeFalse(), "the other Owner's account is being deleted")
		admitted, err = pg.AdmitOwnerRemoval(ctx, removal("acme", leaving, []string{staying, leaving}, false))
		Expect(err).NotTo(HaveOccurred())
		Expect(admitted).To(BeTrue(), "the eraser may still remove the leaving Owner's Membership")
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

var _ = Describe("Quota admissions", func() {
	var pg *db.Postgres

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "quota")
	})

	// cacheShowing is a replica's cache that shows keys: how many, and which of the admitted ones.
	cacheShowing := func(keys ...string) func([]string) (int, []string, error) {
		return func(admitted []string) (int, []string, error) {
			var shown []string
			for _, k := range admitted {
				if slices.Contains(keys, k) {
					shown = append(shown, k)
				}
			}
			return len(keys), shown, nil
		}
	}
	uids := map[string]string{}
	creation := func(ns, key string, dryRun bool) db.QuotaAdmission {
		if uids[ns+"/"+key] == "" {
			uids[ns+"/"+key] = newUID()
		}
		return db.QuotaAdmission{Namespace: ns, Quota: "projects", Key: key, ObjectUID: uids[ns+"/"+key], Limit: 2, DryRun: dryRun}
	}
	admit := func(ctx context.Context, q db.QuotaAdmission, count func([]string) (int, []string, error)) (int, bool) {
		GinkgoHelper()
		used, admitted, err := pg.AdmitQuota(ctx, q, count)
		Expect(err).NotTo(HaveOccurred())
		return used, admitted
	}

	It("counts the creations admitted in the window that the cache does not show yet", func(ctx SpecContext) {
		_, admitted := admit(ctx, creation("acme", "a", true), cacheShowing())
		Expect(admitted).To(BeTrue())
		used, admitted := admit(ctx, creation("acme", "b", false), cacheShowing())
		Expect(admitted).To(BeTrue())
		Expect(used).To(Equal(0), "a dry run records nothing")
		used, admitted = admit(ctx, creation("acme", "a", false), cacheShowing())
		Expect(admitted).To(BeTrue())
		Expect(used).To(Equal(1))

		used, admitted = admit(ctx, creation("acme", "c", false), cacheShowing())
		Expect(admitted).To(BeFalse(), "a and b take both slots although the cache shows neither")
		Expect(used).To(Equal(2))
		used, admitted = admit(ctx, creation("acme", "c", false), cacheShowing("a", "b"))
		Expect(admitted).To(BeFalse())
		Expect(used).To(Equal(2), "an admitted creation the cache shows counts once")
		used, admitted = admit(ctx, creation("acme", "b", false), cacheShowing("a"))
		Expect(admitted).To(BeTrue(), "a key counts once, admitted again or not")
		Expect(used).To(Equal(1))

		_, admitted = admit(ctx, creation("other", "c", false), cacheShowing())
		Expect(admitted).To(BeTrue(), "organizations do not share quotas")

		By("an admitted deletion frees the slot at once")
		Expect(pg.RecordDeletion(ctx, db.AdmissionRecord{ObjectUID: uids["acme/a"], Namespace: "acme", Target: "project/a", RequestedBy: "bob"})).To(Succeed())
		used, admitted = admit(ctx, creation("acme", "c", false), cacheShowing())
		Expect(admitted).To(BeTrue())
		Expect(used).To(Equal(1))

		By("a creation older than the window no longer counts")
		_, err := pg.Pool().Exec(ctx, "UPDATE tenancy.quota_admissions SET admitted_at = now() - interval '1 minute' WHERE namespace = 'acme'")
		Expect(err).NotTo(HaveOccurred())
		used, admitted = admit(ctx, creation("acme", "d", false), cacheShowing())
		Expect(admitted).To(BeTrue())
		Expect(used).To(Equal(0))
	})

	It("serializes two replicas creating for the last slot at once", func(ctx SpecContext) {
		// Two pools stand for two manager replicas whose caches both show none of the creations.
		other, err := db.Connect(ctx, pg.Pool().Config().ConnString(), logr.Discard())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(other.Close)
		Expect(other.Start(ctx)).To(Succeed())

		for round := range 20 {
			ns := fmt.Sprintf("org-%d", round)
			_, admitted := admit(ctx, creation(ns, "first", false), cacheShowing())
			Expect(admitted).To(BeTrue())
			var wg sync.WaitGroup
			results := make([]bool, 2)
			for i, replica := range []*db.Postgres{pg, other} {
				q := creation(ns, fmt.Sprintf("last-%d", i), false)
				wg.Go(func() {
					defer GinkgoRecover()
					_, admitted, err := replica.AdmitQuota(ctx, q, cacheShowing())
					Expect(err).NotTo(HaveOccurred())
					results[i] = admitted
				})
			}
			wg.Wait()
			Expect(results).To(ConsistOf(true, false), "round %d", round)
		}
	})
})

func actorOf(ctx context.Context, pg *db.Postgres, action string) string {
	GinkgoHelper()
	var actor string
	Expect(pg.Pool().QueryRow(ctx, "SELECT actor FROM tenancy.audit_log WHERE action = $1", action).Scan(&actor)).To(Succeed())
	return actor
}
