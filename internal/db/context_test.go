package db_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tctx"
)

// identityFixture is two organizations with a project each, users of several kinds and API keys.
type identityFixture struct {
	orgA, orgB                        string
	projectA, projectB                string
	admin, invitedOwner, projViewer   string
	memberKey, revokedKey, expiredKey string
}

func seedIdentities(ctx context.Context, pg *db.Postgres) identityFixture {
	GinkgoHelper()
	var f identityFixture
	actor := db.Actor{Name: "test"}
	org := func(name string) string {
		r, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: name, Tier: "Free", Namespace: name}, actor)
		Expect(err).NotTo(HaveOccurred())
		return r.ID
	}
	project := func(orgID, name string) string {
		r, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: orgID, Name: name}, actor)
		Expect(err).NotTo(HaveOccurred())
		return r.ID
	}
	f.orgA, f.orgB = org("acme"), org("globex")
	f.projectA, f.projectB = project(f.orgA, "web"), project(f.orgB, "web")

	exec := func(sql string, args ...any) string {
		var id string
		Expect(pg.Pool().QueryRow(ctx, sql, args...).Scan(&id)).To(Succeed())
		return id
	}
	user := func(email string) string {
		return exec("INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id", email)
	}
	membership := func(org, project, user, role, state string) {
		exec(`INSERT INTO tenancy.memberships (uid, organization_id, project_id, user_id, role, state)
		      VALUES (gen_random_uuid(), $1, $2, $3, $4, $5) RETURNING id`, org, nullable(project), user, role, state)
	}
	f.admin, f.invitedOwner, f.projViewer = user("admin@acme.test"), user("owner@acme.test"), user("viewer@acme.test")
	membership(f.orgA, "", f.admin, "Admin", "Active")
	membership(f.orgA, "", f.invitedOwner, "Owner", "Invited")
	membership(f.orgA, f.projectA, f.projViewer, "Viewer", "Active")

	key := func(keyID, role string, revoked bool) string {
		return exec(`INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role, revoked_at)
		             VALUES (gen_random_uuid(), $1::text, $2, $1::text, 'tnc_', sha256(convert_to($1::text, 'UTF8')), $3, CASE WHEN $4 THEN now() END)
		             RETURNING id`, keyID, f.orgA, role, revoked)
	}
	f.memberKey, f.revokedKey = key("key1", "Member", false), key("key2", "Admin", true)
	f.expiredKey = exec(`INSERT INTO tenancy.api_keys (uid, name, organization_id, key_id, prefix, hash, role, expires_at)
	                     VALUES (gen_random_uuid(), 'old', $1, 'key3', 'tnc_', sha256('key3'::bytea), 'Admin', now() - interval '1 second')
	                     RETURNING id`, f.orgA)
	return f
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func newUID() string { return uuid.NewString() }

// inContext runs fn in a transaction as tenancy_app whose tenancy.context is tctxValue, with
// optional tenancy.project narrowing.
func inContext(ctx context.Context, pool *pgxpool.Pool, tctxValue, project string, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true), set_config('tenancy.project', $2, true)",
			tctxValue, project); err != nil {
			return err
		}
		return fn(tx)
	})
}

type principal struct{ user, apiKey, org, project *string }

func readContext(ctx context.Context, pool *pgxpool.Pool, tctxValue, project string) principal {
	GinkgoHelper()
	var p principal
	Expect(inContext(ctx, pool, tctxValue, project, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT tenancy.current_user_id()::text, tenancy.current_api_key_id()::text,
		                                tenancy.current_org_id()::text, tenancy.current_project_id()::text`).
			Scan(&p.user, &p.apiKey, &p.org, &p.project)
	})).To(Succeed())
	return p
}

func signSQL(ctx context.Context, pool *pgxpool.Pool, user, apiKey, org, project string) string {
	GinkgoHelper()
	var v string
	Expect(pool.QueryRow(ctx, "SELECT tenancy.sign_context($1, $2, $3, $4, interval '5 minutes')",
		nullable(user), nullable(apiKey), nullable(org), nullable(project)).Scan(&v)).To(Succeed())
	return v
}

var _ = Describe("Request context and has_role", Ordered, func() {
	var (
		pg *db.Postgres
		f  identityFixture
	)

	BeforeAll(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "context")
		f = seedIdentities(ctx, pg)
	})

	It("returns the signed principal, organization and project", func(ctx SpecContext) {
		p := readContext(ctx, pg.Pool(), signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, ""), "")
		Expect(p.user).To(HaveValue(Equal(f.admin)))
		Expect(p.apiKey).To(BeNil())
		Expect(p.org).To(HaveValue(Equal(f.orgA)))
		Expect(p.project).To(BeNil())
	})

	It("accepts a context signed in Go with the same key (the authd path)", func(ctx SpecContext) {
		var key tctx.Key
		Expect(pg.Pool().QueryRow(ctx, "SELECT kid, secret FROM tenancy.context_keys").Scan(&key.ID, &key.Secret)).To(Succeed())
		signed, err := tctx.Sign(key, tctx.Context{APIKeyID: f.memberKey, OrgID: f.orgA, Expires: time.Now().Add(time.Minute)})
		Expect(err).NotTo(HaveOccurred())
		Expect(readContext(ctx, pg.Pool(), signed, "").apiKey).To(HaveValue(Equal(f.memberKey)))

		expired, err := tctx.Sign(key, tctx.Context{APIKeyID: f.memberKey, OrgID: f.orgA, Expires: time.Now().Add(-time.Second)})
		Expect(err).NotTo(HaveOccurred())
		Expect(readContext(ctx, pg.Pool(), expired, "")).To(Equal(principal{}), "an expired context must read as none")

		forgedKey := tctx.Key{ID: key.ID, Secret: []byte("an attacker's guess at the secret")}
		forged, err := tctx.Sign(forgedKey, tctx.Context{APIKeyID: f.memberKey, OrgID: f.orgA, Expires: time.Now().Add(time.Minute)})
		Expect(err).NotTo(HaveOccurred())
		Expect(readContext(ctx, pg.Pool(), forged, "")).To(Equal(principal{}))
	})

	It("reads a missing, empty, malformed or tampered context as none", func(ctx SpecContext) {
		valid := signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, "")
		tampered := strings.Replace(valid, f.orgA, f.orgB, 1)
		Expect(tampered).NotTo(Equal(valid))
		for _, v := range []string{"", "garbage", "v1.a.b.c.d.e.f.g", tampered, valid + "x"} {
			Expect(readContext(ctx, pg.Pool(), v, "")).To(Equal(principal{}), "context %q", v)
		}
	})

	It("reads nothing once the transaction that set the context has ended", func(ctx SpecContext) {
		conn, err := pg.Pool().Acquire(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		_, err = tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true)", signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, ""))
		Expect(err).NotTo(HaveOccurred())
		Expect(tx.Commit(ctx)).To(Succeed())

		var user *string
		Expect(conn.QueryRow(ctx, "SELECT tenancy.current_user_id()::text").Scan(&user)).To(Succeed())
		Expect(user).To(BeNil())
	})

	It("lets tenancy.project narrow an organization-wide context, never widen or move it", func(ctx SpecContext) {
		orgWide := signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, "")
		Expect(readContext(ctx, pg.Pool(), orgWide, f.projectA).project).To(HaveValue(Equal(f.projectA)))
		Expect(readContext(ctx, pg.Pool(), orgWide, f.projectB)).To(Equal(principal{}), "a project of another organization")
		Expect(readContext(ctx, pg.Pool(), orgWide, "not-a-uuid")).To(Equal(principal{}))

		projectScoped := signSQL(ctx, pg.Pool(), f.projViewer, "", f.orgA, f.projectA)
		Expect(readContext(ctx, pg.Pool(), projectScoped, f.projectA).project).To(HaveValue(Equal(f.projectA)))
		var otherProjectInA string
		r, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: f.orgA, Name: "api"}, db.Actor{Name: "test"})
		Expect(err).NotTo(HaveOccurred())
		otherProjectInA = r.ID
		Expect(readContext(ctx, pg.Pool(), projectScoped, otherProjectInA)).To(Equal(principal{}), "moving a project-scoped context")
	})

	DescribeTable("has_role checks live memberships and keys",
		func(ctx SpecContext, who func() (user, key, project string), org func() string, project func() string, minRole string, want bool) {
			user, key, ctxProject := who()
			signed := signSQL(ctx, pg.Pool(), user, key, f.orgA, ctxProject)
			var got bool
			Expect(inContext(ctx, pg.Pool(), signed, "", func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT tenancy.has_role($1, $2, $3)", org(), nullable(project()), minRole).Scan(&got)
			})).To(Succeed())
			Expect(got).To(Equal(want))
		},
		Entry("an Active Admin is Admin", func() (string, string, string) { return f.admin, "", "" },
			func() string { return f.orgA }, func() string { return "" }, "Admin", true),
		Entry("an Admin is not Owner", func() (string, string, string) { return f.admin, "", "" },
			func() string { return f.orgA }, func() string { return "" }, "Owner", false),
		Entry("an org role reaches the org's projects", func() (string, string, string) { return f.admin, "", "" },
			func() string { return f.orgA }, func() string { return f.projectA }, "Member", true),
		Entry("nothing in another organization", func() (string, string, string) { return f.admin, "", "" },
			func() string { return f.orgB }, func() string { return "" }, "Viewer", false),
		Entry("an Invited Owner has no role yet", func() (string, string, string) { return f.invitedOwner, "", "" },
			func() string { return f.orgA }, func() string { return "" }, "Viewer", false),
		Entry("a project Viewer sees its project", func() (string, string, string) { return f.projViewer, "", "" },
			func() string { return f.orgA }, func() string { return f.projectA }, "Viewer", true),
		Entry("a project role is no organization role", func() (string, string, string) { return f.projViewer, "", "" },
			func() string { return f.orgA }, func() string { return "" }, "Viewer", false),
		Entry("a Member key is Member", func() (string, string, string) { return "", f.memberKey, "" },
			func() string { return f.orgA }, func() string { return "" }, "Member", true),
		Entry("a Member key is not Admin", func() (string, string, string) { return "", f.memberKey, "" },
			func() string { return f.orgA }, func() string { return "" }, "Admin", false),
		Entry("a revoked key has no role", func() (string, string, string) { return "", f.revokedKey, "" },
			func() string { return f.orgA }, func() string { return "" }, "Viewer", false),
		Entry("an expired key has no role", func() (string, string, string) { return "", f.expiredKey, "" },
			func() string { return f.orgA }, func() string { return "" }, "Viewer", false),
	)

	It("cuts access the moment a membership row goes, whatever the context still says", func(ctx SpecContext) {
		user := newUserWithMembership(ctx, pg.Pool(), f.orgA, "leaver@acme.test", "Member")
		signed := signSQL(ctx, pg.Pool(), user, "", f.orgA, "")
		hasRole := func() bool {
			var got bool
			Expect(inContext(ctx, pg.Pool(), signed, "", func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT tenancy.has_role($1, NULL, 'Member')", f.orgA).Scan(&got)
			})).To(Succeed())
			return got
		}
		Expect(hasRole()).To(BeTrue())
		_, err := pg.Pool().Exec(ctx, "DELETE FROM tenancy.memberships WHERE user_id = $1", user)
		Expect(err).NotTo(HaveOccurred())
		Expect(hasRole()).To(BeFalse())
	})

	Describe("as an application role (tenancy_app)", func() {
		It("cannot read secrets or mint contexts", func(ctx SpecContext) {
			for _, sql := range []string{
				"SELECT * FROM tenancy.api_keys",
				"SELECT * FROM tenancy.refresh_tokens",
				"SELECT * FROM tenancy.invitations",
				"SELECT * FROM tenancy.context_keys",
				"SELECT password_hash FROM tenancy.users",
				"SELECT tenancy.sign_context(gen_random_uuid(), NULL, NULL, NULL, interval '1 hour')",
				"SELECT * FROM tenancy.request_context()",
			} {
				err := inContext(ctx, pg.Pool(), "", "", func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, sql)
					return err
				})
				Expect(errorCode(err)).To(Equal("42501"), "%s: want insufficient_privilege, got %v", sql, err)
			}
		})

		It("sees only the identity rows of organizations the principal belongs to", func(ctx SpecContext) {
			count := func(tctxValue, table string) int {
				var n int
				Expect(inContext(ctx, pg.Pool(), tctxValue, "", func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "SELECT count(*) FROM tenancy."+table).Scan(&n)
				})).To(Succeed())
				return n
			}
			admin := signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, "")
			Expect(count(admin, "organizations")).To(Equal(1))
			Expect(count("", "organizations")).To(Equal(0), "no context sees nothing")
			Expect(count(admin, "projects")).To(BeNumerically(">=", 1))
			var foreign int
			Expect(inContext(ctx, pg.Pool(), admin, "", func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT count(*) FROM tenancy.projects WHERE organization_id = $1", f.orgB).Scan(&foreign)
			})).To(Succeed())
			Expect(foreign).To(Equal(0))
			Expect(count(admin, "users_public")).To(BeNumerically(">=", 3))
			Expect(count("", "users_public")).To(Equal(0))
		})

		It("writes audit rows only as the request's own principal", func(ctx SpecContext) {
			admin := signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, "")
			insert := func(actorUser, org string) error {
				return inContext(ctx, pg.Pool(), admin, "", func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO tenancy.audit_log (actor, actor_user_id, action, organization_id)
					                        VALUES ('app', $1, 'invoice.created', $2)`, actorUser, org)
					return err
				})
			}
			Expect(insert(f.admin, f.orgA)).To(Succeed())
			Expect(errorCode(insert(f.projViewer, f.orgA))).To(Equal("42501"), "as somebody else")
			Expect(errorCode(insert(f.admin, f.orgB))).To(Equal("42501"), "into another organization")

			invited := signSQL(ctx, pg.Pool(), f.invitedOwner, "", f.orgA, "")
			err := inContext(ctx, pg.Pool(), invited, "", func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO tenancy.audit_log (actor, actor_user_id, action, organization_id)
				                        VALUES ('app', $1, 'invoice.created', $2)`, f.invitedOwner, f.orgA)
				return err
			})
			Expect(errorCode(err)).To(Equal("42501"), "as a principal without a live role there (Invited)")
		})
	})
})

func newUserWithMembership(ctx context.Context, pool *pgxpool.Pool, org, email, role string) string {
	GinkgoHelper()
	var user string
	Expect(pool.QueryRow(ctx, "INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id", email).Scan(&user)).To(Succeed())
	_, err := pool.Exec(ctx, `INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
	                          VALUES (gen_random_uuid(), $1, $2, $3, 'Active')`, org, user, role)
	Expect(err).NotTo(HaveOccurred())
	return user
}

func errorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return fmt.Sprint(err)
}
