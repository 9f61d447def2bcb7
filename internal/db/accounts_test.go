package db_test

import (
	"context"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
)

var _ = Describe("Account suspensions", func() {
	var pg *db.Postgres
	admin := db.Actor{Name: "platform-admin"}
	BeforeEach(func(ctx SpecContext) { _, pg = newMigratedDatabase(ctx, "suspensions") })

	disabled := func(ctx context.Context, email string) bool {
		GinkgoHelper()
		var d bool
		Expect(pg.Pool().QueryRow(ctx, "SELECT disabled FROM tenancy.users WHERE email = $1", email).Scan(&d)).To(Succeed())
		return d
	}
	newUser := func(ctx context.Context, email string) string {
		GinkgoHelper()
		var id string
		Expect(pg.Pool().QueryRow(ctx, "INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id", email).Scan(&id)).To(Succeed())
		return id
	}

	It("disable the account and end its sessions, put the flag back when cleared by hand, and enable it when the last one goes", func(ctx SpecContext) {
		id := newUser(ctx, "ann@example.com")
		_, err := pg.Pool().Exec(ctx, `INSERT INTO tenancy.refresh_tokens (hash, family_id, user_id, expires_at, family_expires_at)
			VALUES (sha256('a session'::bytea), gen_random_uuid(), $1, now() + interval '1 hour', now() + interval '1 day')`, id)
		Expect(err).NotTo(HaveOccurred())

		first := db.AccountSuspension{UID: newUID(), Name: "first", Email: "Ann@Example.com", Reason: "fraud"}
		r, err := pg.SuspendAccount(ctx, first, admin)
		Expect(err).NotTo(HaveOccurred())
		Expect(r).To(Equal(db.SuspensionResult{UserID: id, SessionsEnded: 1}))
		Expect(disabled(ctx, "ann@example.com")).To(BeTrue())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.refresh_tokens WHERE revoked_at IS NULL")).To(BeZero())

		By("idempotent: a second apply audits nothing")
		_, err = pg.SuspendAccount(ctx, first, admin)
		Expect(err).NotTo(HaveOccurred())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'account.suspended'")).To(Equal(1))

		By("a resync puts back a flag cleared by hand")
		_, err = pg.Pool().Exec(ctx, "UPDATE tenancy.users SET disabled = false WHERE id = $1", id)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.SuspendAccount(ctx, first, admin)
		Expect(err).NotTo(HaveOccurred())
		Expect(disabled(ctx, "ann@example.com")).To(BeTrue())

		By("two suspensions: the account stays disabled until both are gone")
		second := db.AccountSuspension{UID: newUID(), Name: "second", Email: "ann@example.com"}
		_, err = pg.SuspendAccount(ctx, second, admin)
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.LiftSuspension(ctx, first.UID, first.Name, admin)).To(Succeed())
		Expect(disabled(ctx, "ann@example.com")).To(BeTrue())
		Expect(pg.LiftSuspension(ctx, second.UID, second.Name, admin)).To(Succeed())
		Expect(disabled(ctx, "ann@example.com")).To(BeFalse())
		Expect(pg.LiftSuspension(ctx, second.UID, second.Name, admin)).To(Succeed(), "idempotent")
	})

	It("make an account created later start disabled, and never enable an account being deleted", func(ctx SpecContext) {
		s := db.AccountSuspension{UID: newUID(), Name: "early", Email: "bo@example.com"}
		r, err := pg.SuspendAccount(ctx, s, admin)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.UserID).To(BeEmpty())
		newUser(ctx, "bo@example.com")
		Expect(disabled(ctx, "bo@example.com")).To(BeTrue())
		newUser(ctx, "other@example.com")
		Expect(disabled(ctx, "other@example.com")).To(BeFalse())

		_, err = pg.Pool().Exec(ctx, "UPDATE tenancy.users SET deletion_requested_at = now() WHERE email = 'bo@example.com'")
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.LiftSuspension(ctx, s.UID, s.Name, admin)).To(Succeed())
		Expect(disabled(ctx, "bo@example.com")).To(BeTrue())
	})
})

var _ = Describe("Erasing an account", func() {
	It("erases the person and their orphaned membership rows, cancels their mail and pseudonymises the audit log", func(ctx SpecContext) {
		_, pg := newMigratedDatabase(ctx, "erase")
		f := seedIdentities(ctx, pg)
		exec := func(sql string, args ...any) {
			GinkgoHelper()
			_, err := pg.Pool().Exec(ctx, sql, args...)
			Expect(err).NotTo(HaveOccurred())
		}
		const email = "admin@acme.test"
		exec(`INSERT INTO tenancy.audit_log (actor, actor_user_id, action, target, organization_id, details) VALUES
			($1, $2, 'login', 'session/x', $3, '{"client_address": "203.0.113.7", "organization": "acme"}'),
			('owner@acme.test', NULL, 'membership.changed', 'user/ADMIN@acme.test', $3, '{"note": "promoted admin@acme.test"}'),
			('someone', NULL, 'project.created', 'project/web', $3, '{}')`, email, f.admin, f.orgA)
		exec(`INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details) VALUES
			('kubectl-admin', 'membership.created', 'membership/admin-acme-test-1a2b', $1, 'uid-1', '{"user": "admin@acme.test"}'),
			('kubectl-admin', 'membership.updated', 'membership/admin-acme-test-1a2b', $1, 'uid-1', '{"role": "Admin"}'),
			('manager', 'membership.deleted', 'membership/admin-acme-test-1a2b', $1, 'uid-1', $2),
			('kubectl-admin', 'membership.created', 'membership/someone-else', $1, 'uid-2', '{"user": "other@acme.test"}')`,
			f.orgA, map[string]any{"userID": f.admin})
		exec(`INSERT INTO tenancy.mail_outbox (kind, recipient, subject, body_text) VALUES
			('new_sign_in', $1, 'New sign-in', 'body'), ('new_sign_in', 'viewer@acme.test', 'New sign-in', 'body')`, email)
		exec(`INSERT INTO tenancy.mail_outbox (kind, recipient, subject, sent_at) VALUES ('password_changed', $1, 'Your password was changed', now())`, email)
		exec("UPDATE tenancy.users SET disabled = true, deletion_requested_at = now() WHERE id = $1", f.admin)

		toErase, err := pg.AccountsToErase(ctx, 10)
		Expect(err).NotTo(HaveOccurred())
		Expect(toErase).To(Equal([]db.AccountToErase{{UserID: f.admin, Email: email}}))

		notice := func(to string) (*mail.Message, error) {
			return &mail.Message{Kind: mail.AccountDeleted, To: to, Subject: "Your account was deleted", Text: "gone\n"}, nil
		}
		erased, err := pg.EraseAccount(ctx, f.admin, db.Actor{Name: "eraser"}, notice)
		Expect(err).NotTo(HaveOccurred())
		Expect(erased).To(BeTrue())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.users WHERE id = $1", f.admin)).To(BeZero())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.memberships WHERE user_id = $1", f.admin)).To(BeZero())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.memberships")).To(Equal(2), "the others' memberships stay")

		pseudonym := db.DeletedUserName(f.admin)
		rows, err := pg.Pool().Query(ctx, "SELECT actor || ' ' || action || ' ' || target || ' ' || details::text FROM tenancy.audit_log ORDER BY id")
		Expect(err).NotTo(HaveOccurred())
		audit, err := pgx.CollectRows(rows, pgx.RowTo[string])
		Expect(err).NotTo(HaveOccurred())
		Expect(audit).To(ContainElements(
			pseudonym+` login session/x {"organization": "acme"}`,
			`owner@acme.test membership.changed user/`+pseudonym+` {"note": "promoted `+pseudonym+`"}`,
			`someone project.created project/web {}`,
			`kubectl-admin membership.created membership/`+pseudonym+` {"user": "`+pseudonym+`"}`,
			`kubectl-admin membership.updated membership/`+pseudonym+` {"role": "Admin"}`,
			`manager membership.deleted membership/`+pseudonym+` {"userID": "`+f.admin+`"}`,
			`kubectl-admin membership.created membership/someone-else {"user": "other@acme.test"}`,
			`eraser account.erased user/`+pseudonym+` {"orphanedMembershipRows": 1}`,
		))
		Expect(audit).NotTo(ContainElement(ContainSubstring("admin@acme")))
		Expect(audit).NotTo(ContainElement(ContainSubstring("admin-acme")))

		rows, err = pg.Pool().Query(ctx, "SELECT kind || ' ' || recipient FROM tenancy.mail_outbox ORDER BY id")
		Expect(err).NotTo(HaveOccurred())
		outbox, err := pgx.CollectRows(rows, pgx.RowTo[string])
		Expect(err).NotTo(HaveOccurred())
		Expect(outbox).To(Equal([]string{
			"new_sign_in viewer@acme.test",
			"password_changed " + pseudonym,
			"account_deleted " + email,
		}), "unsent mail to the person is cancelled, sent mail forgets the address, and the confirmation is the last")

		erased, err = pg.EraseAccount(ctx, f.admin, db.Actor{Name: "eraser"}, notice)
		Expect(err).NotTo(HaveOccurred())
		Expect(erased).To(BeFalse(), "idempotent")
	})
})
