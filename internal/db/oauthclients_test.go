package db_test

import (
	"context"
	"crypto/sha256"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"

	"github.com/tenancy-dev/tenancy/internal/db"
)

var _ = Describe("OAuth client rows", func() {
	var (
		pg    *db.Postgres
		orgID string
	)
	actor := db.Actor{Name: "alice@example.com", RequestID: "req-1"}
	const grace = time.Hour

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "oauthclients")
		org, err := pg.UpsertOrganization(ctx, db.Organization{UID: newUID(), Name: "acme", Tier: "Free", Namespace: "acme"}, actor)
		Expect(err).NotTo(HaveOccurred())
		orgID = org.ID
	})

	newClient := func(name, namespace, org string) db.OAuthClient {
		return db.OAuthClient{
			UID: newUID(), ClientID: name + "." + namespace, Namespace: namespace, Name: name, OrganizationID: org,
			DisplayName: "Portal", RedirectURIs: []string{"https://portal.example.com/callback"},
			GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid", "profile", "email"},
		}
	}
	hashOf := func(s string) []byte {
		sum := sha256.Sum256([]byte(s))
		return sum[:]
	}
	audited := func(ctx context.Context, action string) int {
		GinkgoHelper()
		return countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = $1", action)
	}

	// clientRow is what authd reads of a client.
	type clientRow struct {
		ClientID, Namespace, Name, DisplayName string
		OrganizationID                         *string
		RedirectURIs, PostLogoutRedirectURIs   []string
		Public, FirstParty                     bool
		GrantTypes, Scopes                     []string
		AccessTokenTTL, RefreshTokenTTL        *time.Duration
	}
	readClient := func(ctx context.Context, uid string) (clientRow, error) {
		var r clientRow
		err := pg.Pool().QueryRow(ctx, `
			SELECT client_id, namespace, name, display_name, organization_id::text, redirect_uris, post_logout_redirect_uris,
			       public, first_party, grant_types, scopes, access_token_ttl, refresh_token_ttl
			FROM tenancy.oauth_clients WHERE uid = $1`, uid).Scan(&r.ClientID, &r.Namespace, &r.Name, &r.DisplayName, &r.OrganizationID,
			&r.RedirectURIs, &r.PostLogoutRedirectURIs, &r.Public, &r.FirstParty, &r.GrantTypes, &r.Scopes, &r.AccessTokenTTL, &r.RefreshTokenTTL)
		return r, err
	}

	It("registers a client once, writes only when something changed, and audits both", func(ctx SpecContext) {
		c := newClient("portal", "acme", orgID)
		first, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(first).To(Equal(db.UpsertResult{ID: "portal.acme", Changed: true}))
		Expect(readClient(ctx, c.UID)).To(Equal(clientRow{
			ClientID: "portal.acme", Namespace: "acme", Name: "portal", DisplayName: "Portal", OrganizationID: &orgID,
			RedirectURIs: []string{"https://portal.example.com/callback"}, PostLogoutRedirectURIs: []string{},
			GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid", "profile", "email"},
		}))

		again, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Changed).To(BeFalse())

		hour, day := time.Hour, 30*24*time.Hour
		c.AccessTokenTTL, c.RefreshTokenTTL = &hour, &day
		c.FirstParty = true
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
		changed, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(changed.Changed).To(BeTrue())
		Expect(readClient(ctx, c.UID)).To(MatchFields(IgnoreExtras, Fields{
			"FirstParty":      BeTrue(),
			"GrantTypes":      Equal([]string{"authorization_code", "refresh_token"}),
			"AccessTokenTTL":  PointTo(Equal(hour)),
			"RefreshTokenTTL": PointTo(Equal(day)),
		}))
		unchanged, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(unchanged.Changed).To(BeFalse(), "lifetimes compare equal once stored as intervals")

		Expect(audited(ctx, "oauthclient.registered")).To(Equal(1))
		Expect(audited(ctx, "oauthclient.updated")).To(Equal(1))
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.updated'
		                           AND target = 'oauthclient/portal.acme' AND organization_id = $1 AND actor = 'alice@example.com'
		                           AND details->>'firstParty' = 'true'`, orgID)).To(Equal(1))
	})

	It("keeps a platform-wide client without an organization", func(ctx SpecContext) {
		c := newClient("console", "tenancy-system", "")
		_, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(readClient(ctx, c.UID)).To(HaveField("OrganizationID", BeNil()))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.registered' AND organization_id IS NULL")).
			To(Equal(1))
	})

	It("restores a row deleted by hand, and replaces the orphaned row of an earlier object of the same name", func(ctx SpecContext) {
		c := newClient("portal", "acme", orgID)
		_, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.Pool().Exec(ctx, "DELETE FROM tenancy.oauth_clients")
		Expect(err).NotTo(HaveOccurred())
		restored, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(restored.Changed).To(BeTrue())

		_, err = pg.IssueOAuthClientSecret(ctx, c, hashOf("tcs_old"), "", grace, "created", actor)
		Expect(err).NotTo(HaveOccurred())
		replacement := newClient("portal", "acme", orgID)
		_, err = pg.UpsertOAuthClient(ctx, replacement, actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_clients WHERE uid = $1", replacement.UID)).To(Equal(1))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_clients")).To(Equal(1))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_client_secrets")).To(Equal(0), "the orphan's secret goes with it")
		Expect(audited(ctx, "oauthclient.orphan-replaced")).To(Equal(1))
	})

	It("refuses a client whose organization has no row", func(ctx SpecContext) {
		_, err := pg.UpsertOAuthClient(ctx, newClient("portal", "acme", newUID()), actor)
		Expect(db.IsForeignKeyViolation(err)).To(BeTrue(), "got %v", err)
	})

	It("rotates a secret: the previous one works for the grace period, and goes once that is over", func(ctx SpecContext) {
		c := newClient("portal", "acme", orgID)
		_, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		current, err := pg.CurrentOAuthClientSecret(ctx, c.UID)
		Expect(err).NotTo(HaveOccurred())
		Expect(current).To(BeNil())

		first, err := pg.IssueOAuthClientSecret(ctx, c, hashOf("tcs_first"), "", grace, "created", actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.CurrentOAuthClientSecret(ctx, c.UID)).To(PointTo(Equal(first)))
		Expect(audited(ctx, "oauthclient.secret_issued")).To(Equal(1))

		second, err := pg.IssueOAuthClientSecret(ctx, c, hashOf("tcs_second"), "2026-05", grace, "spec.rotation changed", actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.CurrentOAuthClientSecret(ctx, c.UID)).To(PointTo(MatchFields(IgnoreExtras, Fields{
			"Hash": Equal(hashOf("tcs_second")), "Rotation": Equal("2026-05"), "CreatedAt": Equal(second.CreatedAt),
		})))
		var expires time.Time
		Expect(pg.Pool().QueryRow(ctx, "SELECT expires_at FROM tenancy.oauth_client_secrets WHERE secret_hash = $1", hashOf("tcs_first")).
			Scan(&expires)).To(Succeed())
		Expect(expires).To(BeTemporally("~", time.Now().Add(grace), time.Minute))
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.secret_rotated'
		                           AND details->>'reason' = 'spec.rotation changed' AND (details->>'graceSeconds')::int = 3600`)).To(Equal(1))

		// Once its grace period is over, the next issue deletes it.
		_, err = pg.Pool().Exec(ctx, "UPDATE tenancy.oauth_client_secrets SET expires_at = now() - interval '1 second' WHERE secret_hash = $1", hashOf("tcs_first"))
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.IssueOAuthClientSecret(ctx, c, hashOf("tcs_third"), "2026-06", grace, "spec.rotation changed", actor)
		Expect(err).NotTo(HaveOccurred())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_client_secrets WHERE client_uid = $1", c.UID)).To(Equal(2))
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_client_secrets WHERE secret_hash = $1", hashOf("tcs_first"))).To(BeZero())

		Expect(pg.DeleteOAuthClientSecrets(ctx, c.UID)).To(Succeed())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.oauth_client_secrets")).To(BeZero())
	})

	It("deletes a client with its secrets and sessions, naming who asked, once", func(ctx SpecContext) {
		c := newClient("portal", "acme", orgID)
		_, err := pg.UpsertOAuthClient(ctx, c, actor)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.IssueOAuthClientSecret(ctx, c, hashOf("tcs_secret"), "", grace, "created", actor)
		Expect(err).NotTo(HaveOccurred())
		var userID string
		Expect(pg.Pool().QueryRow(ctx, "INSERT INTO tenancy.users (email) VALUES ('carol@example.com') RETURNING id").Scan(&userID)).To(Succeed())
		_, err = pg.Pool().Exec(ctx, `
			INSERT INTO tenancy.refresh_tokens (hash, family_id, user_id, organization_id, expires_at, family_expires_at, client_uid)
			VALUES ($1, gen_random_uuid(), $2, $3, now() + interval '1 hour', now() + interval '1 day', $4)`,
			hashOf("refresh"), userID, orgID, c.UID)
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.RecordDeletion(ctx, db.AdmissionRecord{ObjectUID: c.UID, Namespace: "acme", Target: "oauthclient/portal.acme",
			RequestedBy: "bob@example.com"})).To(Succeed())

		Expect(pg.DeleteOAuthClient(ctx, c.UID, c.ClientID, actor)).To(Succeed())
		Expect(pg.DeleteOAuthClient(ctx, c.UID, c.ClientID, actor)).To(Succeed(), "idempotent")
		for _, table := range []string{"oauth_clients", "oauth_client_secrets", "refresh_tokens"} {
			Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy."+table)).To(BeZero(), "tenancy.%s", table)
		}
		Expect(countRows(ctx, pg, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.deleted'
		                           AND actor = 'bob@example.com' AND (details->>'sessionsEnded')::int = 1`)).To(Equal(1))
	})
})
