package db_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Membership rows and invitations", func() {
	var pg *db.Postgres
	actor := db.Actor{Name: "alice@example.com", RequestID: "req-1"}

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "members")
	})

	newOrganization := func(ctx SpecContext, name string) string {
		GinkgoHelper()
		org, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: name, Tier: "Free", Namespace: name}, actor)
		Expect(err).NotTo(HaveOccurred())
		return org.ID
	}

	It("creates the user with the membership, and writes again only when the role changes", func(ctx SpecContext) {
		m := db.Membership{UID: newUID(), Name: "bob", OrganizationID: newOrganization(ctx, "acme"), Email: " Bob@Example.com ", Role: "Member"}
		first, err := pg.UpsertMembership(ctx, m, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(first.Changed).To(BeTrue())
		Expect(first.State).To(Equal("Invited"), "a user without a password is invited")
		Expect(first.UserID).NotTo(BeEmpty())
		Expect(testenv.ReadUser(ctx, pg.Pool(), "u.email = 'bob@example.com'")).To(HaveField("ID", first.UserID))

		again, err := pg.UpsertMembership(ctx, m, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(again).To(Equal(db.MembershipResult{UpsertResult: db.UpsertResult{ID: first.ID}, UserID: first.UserID, State: "Invited"}))

		m.Role = "Admin"
		promoted, err := pg.UpsertMembership(ctx, m, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(promoted).To(Equal(db.MembershipResult{UpsertResult: db.UpsertResult{ID: first.ID, Changed: true}, UserID: first.UserID, State: "Invited"}))
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE actor = 'alice@example.com'
		                   AND action IN ('membership.created', 'membership.updated')`)).To(Equal(2))
	})

	It("makes a verified user an Active member at once, and an unverified one with a password Invited", func(ctx SpecContext) {
		_, err := pg.Pool().Exec(ctx, `INSERT INTO tenancy.users (email, password_hash, email_verified_at)
			VALUES ('carol@example.com', 'x', now()), ('cody@example.com', 'x', NULL)`)
		Expect(err).NotTo(HaveOccurred())
		org := newOrganization(ctx, "acme")
		res, err := pg.UpsertMembership(ctx, db.Membership{UID: newUID(), Name: "carol", OrganizationID: org,
			Email: "carol@example.com", Role: "Member"}, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.State).To(Equal("Active"))
		cody := db.Membership{UID: newUID(), Name: "cody", OrganizationID: org, Email: "cody@example.com", Role: "Member"}
		res, err = pg.UpsertMembership(ctx, cody, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.State).To(Equal("Invited"), "a password set through a link proves no mailbox")

		By("a platform admin's say-so verifies the user and activates the membership, once")
		cody.VouchEmail = true
		res, err = pg.UpsertMembership(ctx, cody, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.State).To(Equal("Active"))
		Expect(res.Changed).To(BeTrue())
		res, err = pg.UpsertMembership(ctx, cody, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Changed).To(BeFalse(), "a resync of a vouched, Active membership writes nothing")
		var verifications int
		Expect(pg.Pool().QueryRow(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'user.email_verified' AND target = 'user/cody@example.com'").
			Scan(&verifications)).To(Succeed())
		Expect(verifications).To(Equal(1))
	})

	It("gives one user row to memberships of a new email created at the same moment", func(ctx SpecContext) {
		const organizations = 16
		orgIDs := make([]string, organizations)
		for i := range orgIDs {
			orgIDs[i] = newOrganization(ctx, fmt.Sprintf("org-%d", i))
		}
		results := make([]db.MembershipResult, organizations)
		errs := make([]error, organizations)
		var wg sync.WaitGroup
		for i := range orgIDs {
			wg.Go(func() {
				results[i], errs[i] = pg.UpsertMembership(ctx, db.Membership{UID: newUID(), Name: "dave",
					OrganizationID: orgIDs[i], Email: "dave@example.com", Role: "Member"}, actor)
			})
		}
		wg.Wait()
		Expect(errors.Join(errs...)).NotTo(HaveOccurred())
		for _, r := range results {
			Expect(r.UserID).To(Equal(results[0].UserID))
		}
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.users")).To(Equal(1))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.memberships WHERE user_id = $1", results[0].UserID)).To(Equal(organizations))
	})

	It("names the membership that already holds the scope, and writes nothing", func(ctx SpecContext) {
		orgID := newOrganization(ctx, "acme")
		holder := db.Membership{UID: newUID(), Name: "erin", OrganizationID: orgID, Email: "erin@example.com", Role: "Member"}
		_, err := pg.UpsertMembership(ctx, holder, actor)
		Expect(err).NotTo(HaveOccurred())

		_, err = pg.UpsertMembership(ctx, db.Membership{UID: newUID(), Name: "erin-again", OrganizationID: orgID, Email: "ERIN@example.com", Role: "Admin"}, actor)
		var dup *db.DuplicateMembershipError
		Expect(errors.As(err, &dup)).To(BeTrue(), "got %v", err)
		Expect(dup.UID).To(Equal(holder.UID))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.memberships")).To(Equal(1))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE target = 'membership/erin-again'")).To(Equal(0))
	})

	It("keeps one usable invitation per membership, the latest", func(ctx SpecContext) {
		orgID := newOrganization(ctx, "acme")
		m, err := pg.UpsertMembership(ctx, db.Membership{UID: newUID(), Name: "frank", OrganizationID: orgID, Email: "frank@example.com", Role: "Member"}, actor)
		Expect(err).NotTo(HaveOccurred())
		expires := time.Now().Add(time.Hour).Truncate(time.Second)
		first, second := sha256.Sum256([]byte("first")), sha256.Sum256([]byte("second"))
		Expect(pg.ReplaceInvitation(ctx, m.ID, orgID, first[:], expires, actor, nil)).To(Succeed())
		Expect(pg.ReplaceInvitation(ctx, m.ID, orgID, second[:], expires, actor, nil)).To(Succeed())

		state, _, err := pg.CheckInvitation(ctx, m.ID, first[:])
		Expect(err).NotTo(HaveOccurred())
		Expect(state).To(Equal(db.InvitationUnknown), "the replaced invitation no longer works")
		state, until, err := pg.CheckInvitation(ctx, m.ID, second[:])
		Expect(err).NotTo(HaveOccurred())
		Expect(state).To(Equal(db.InvitationValid))
		Expect(until).To(BeTemporally("==", expires))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.invitations WHERE membership_id = $1", m.ID)).To(Equal(1))
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'invitation.issued'
		                   AND organization_id = $1 AND details->>'expiresAt' = $2`, orgID, expires.UTC().Format(time.RFC3339))).To(Equal(2))
	})
})
