package importer_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/crypto/bcrypt"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/authd"
)

// An old system's slugs and addresses were chosen by its customers, so an import must not let
// them take over what exists in Tenancy: a namespace, someone else's Organization, or an account
// registered under an address before the import.
var _ = Describe("tenancy import takes over nothing that exists", Ordered, func() {
	const intruded = `
CREATE SCHEMA intruded;
CREATE TABLE intruded.organizations (id uuid PRIMARY KEY, slug text NOT NULL, name text NOT NULL, subscription_tier text NOT NULL);
CREATE TABLE intruded.users (id uuid PRIMARY KEY, email text NOT NULL, full_name text NOT NULL DEFAULT '', password_hash text, created_at timestamptz);
CREATE TABLE intruded.organization_memberships (organization_id uuid NOT NULL, user_id uuid NOT NULL, role text NOT NULL);
`
	const mapping = `
source: intruded
schema: intruded
projects: {table: ""}
projectMemberships: {table: ""}
apiKeys: {table: ""}
auditLogs: {table: ""}
`
	var (
		victim, monitoring, squatted = uuid.NewString(), uuid.NewString(), uuid.NewString()
		ceo, cust, bob               = uuid.NewString(), uuid.NewString(), uuid.NewString()
		report                       run
	)

	BeforeAll(func(ctx SpecContext) {
		conn, err := pgx.Connect(ctx, databaseURL)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, intruded)
		Expect(err).NotTo(HaveOccurred())
		oldHash, err := bcrypt.GenerateFromPassword([]byte("the ceo's old password"), bcrypt.MinCost)
		Expect(err).NotTo(HaveOccurred())
		batch := &pgx.Batch{}
		batch.Queue(`INSERT INTO intruded.organizations VALUES ($1, 'victim', 'Victim', 'pro'), ($2, 'monitoring', 'Monitoring', 'pro'), ($3, 'squatted', 'Squatted', 'pro')`,
			victim, monitoring, squatted)
		batch.Queue(`INSERT INTO intruded.users VALUES ($1, 'ceo@victim.example', 'CEO', $4), ($2, 'cust@monitoring.example', '', $4), ($3, 'bob@squatted.example', '', $4)`,
			ceo, cust, bob, string(oldHash))
		batch.Queue(`INSERT INTO intruded.organization_memberships VALUES ($1, $2, 'owner'), ($3, $4, 'owner'), ($5, $6, 'owner')`,
			victim, ceo, monitoring, cust, squatted, bob)
		Expect(conn.SendBatch(ctx, batch).Close()).To(Succeed())

		By("a namespace of the cluster with a Secret, named like a customer's slug")
		Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}})).To(Succeed())
		Expect(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: "grafana-admin"},
			StringData: map[string]string{"password": "hunter2"}})).To(Succeed())
		By("an Organization someone else made under another customer's slug")
		Expect(admin.Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "squatted"}})).To(Succeed())
		By("an account registered under the CEO's address before the import, with a password of its own")
		attackerHash, err := authd.HashPassword("the attacker's password", authd.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1})
		Expect(err).NotTo(HaveOccurred())
		_, err = conn.Exec(ctx, `INSERT INTO tenancy.users (email, password_hash) VALUES ('ceo@victim.example', $1)`, attackerHash)
		Expect(err).NotTo(HaveOccurred())

		file := filepath.Join(GinkgoT().TempDir(), "mapping.yaml")
		Expect(os.WriteFile(file, []byte(mapping), 0o600)).To(Succeed())
		report = tenancy(ctx, "import", "--source-url", databaseURL, "--database-url", databaseURL, "--mapping", file,
			"--out", filepath.Join(GinkgoT().TempDir(), "out"), "--apply", "--wait", "2m")
		Expect(report.code).To(Equal(2), report.stderr)
	})

	It("never adopts an existing namespace, whose Secrets the imported Owners would read", func(ctx SpecContext) {
		Expect(report.stdout).To(ContainSubstring("organizations id=%s: namespace monitoring exists; the import never adopts a namespace unless told", monitoring))
		Expect(admin.Get(ctx, client.ObjectKey{Name: "monitoring"}, &tenancyv1.Organization{})).NotTo(Succeed())
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "cust@monitoring.example", Groups: []string{"tenancy:users", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "monitoring", Verb: "get", Resource: "secrets", Name: "grafana-admin"},
		}}
		Expect(admin.Create(ctx, review)).To(Succeed())
		Expect(review.Status.Allowed).To(BeFalse())
	})

	It("creates nothing in an Organization it did not make", func(ctx SpecContext) {
		Expect(report.stdout).To(ContainSubstring("organizations id=%s: an Organization squatted exists already that this import did not make", squatted))
		var members tenancyv1.MembershipList
		Expect(admin.List(ctx, &members, client.InNamespace("squatted"))).To(Succeed())
		Expect(members.Items).To(BeEmpty())
	})

	It("leaves an account registered under an imported address alone: its memberships wait for an invitation", func(ctx SpecContext) {
		Expect(report.stdout).To(ContainSubstring("users id=%s: ceo@victim.example has a Tenancy account already, which this import did not make", ceo))
		Eventually(func(g Gomega) {
			var members tenancyv1.MembershipList
			g.Expect(admin.List(ctx, &members, client.InNamespace("victim"))).To(Succeed())
			g.Expect(members.Items).To(HaveLen(1))
			g.Expect(members.Items[0].Status.State).To(Equal(tenancyv1.MembershipInvited), "the account is not verified")
		}).WithContext(ctx).Should(Succeed())
		var verified bool
		var hash string
		Expect(sqlPool.QueryRow(ctx, `SELECT email_verified_at IS NOT NULL, password_hash FROM tenancy.users WHERE email = 'ceo@victim.example'`).
			Scan(&verified, &hash)).To(Succeed())
		Expect(verified).To(BeFalse())
		Expect(hash).To(HavePrefix("$argon2id$"), "the import put no hash of its own on the account")
		status, body := login("ceo@victim.example", "the attacker's password", "victim")
		Expect(status).To(Equal(http.StatusForbidden), "%v", body)
		Expect(body["error"]).To(Equal("membership_not_active"))
		status, _ = login("ceo@victim.example", "the ceo's old password", "victim")
		Expect(status).To(Equal(http.StatusUnauthorized))
	})
})
