package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// run is one run of the tenancy command.
type run struct {
	code           int
	stdout, stderr string
}

func tenancy(ctx context.Context, args ...string) run {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, tenancyBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		Fail(fmt.Sprintf("running tenancy %v: %v", args, err))
	}
	GinkgoWriter.Printf("$ tenancy %s\n%s%s\n", strings.Join(args, " "), stdout.String(), stderr.String())
	return run{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// countsOf reads the "<kind>  created updated unchanged waiting" line of a report.
func countsOf(report, kind string) [4]int {
	GinkgoHelper()
	line := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(kind) + `\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`).FindStringSubmatch(report)
	Expect(line).NotTo(BeNil(), "the report has no counts of %s:\n%s", kind, report)
	var c [4]int
	for i := range c {
		c[i], _ = strconv.Atoi(line[i+1])
	}
	return c
}

var _ = Describe("tenancy import", Ordered, func() {
	var (
		f       *fixture
		out     string
		mapping string
		args    []string
		first   run
	)

	BeforeAll(func(ctx SpecContext) {
		conn, err := pgx.Connect(ctx, databaseURL)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(context.Background())
		f = writeFixture(ctx, conn)
		dir := GinkgoT().TempDir()
		out = filepath.Join(dir, "tenants")
		mapping = filepath.Join(dir, "mapping.yaml")
		Expect(os.WriteFile(mapping, []byte(fixtureMapping), 0o600)).To(Succeed())
		// The old system and Tenancy share one database: Tenancy's schema beside the app's.
		args = []string{"import", "--source-url", databaseURL, "--database-url", databaseURL, "--mapping", mapping,
			"--out", out, "--apply", "--wait", "3m", "--old-keys-until", time.Now().AddDate(0, 3, 0).Format(time.DateOnly)}
	})

	// problems are the lines the report must name: each bad row, once.
	expectProblems := func(report string) {
		GinkgoHelper()
		section := report[strings.Index(report, "Problems ("):]
		lines := strings.Split(strings.TrimSpace(section), "\n")[1:]
		Expect(lines).To(HaveLen(6), section)
		Expect(section).To(ContainSubstring("users id=%s: email \"Dup@Case.example\" is also the address of id=%s (dup@case.example)", f.dupIDs[0], f.dupIDs[1]))
		Expect(section).To(ContainSubstring("users id=%s: email \"dup@case.example\" is also the address of id=%s (Dup@Case.example)", f.dupIDs[1], f.dupIDs[0]))
		Expect(section).To(ContainSubstring("organization_memberships (organization_id=%s, user_id=%s): user %s is not among the imported users", f.orgs[4].id, f.dupIDs[0], f.dupIDs[0]))
		Expect(section).To(ContainSubstring("organization_memberships (organization_id=%s, user_id=%s): user %s is not among the imported users", f.orgs[5].id, f.ghostID, f.ghostID))
		Expect(section).To(ContainSubstring("project_memberships (project_id=%s, user_id=%s): unknown role \"superuser\"", f.superuserProject, f.users[6*usersPerOrg+2].id))
		Expect(section).To(ContainSubstring("api_keys id=%d: the hash is not SHA-256 in hex ($2b$): the old key cannot be checked; only the new APIKey globex-corp/salted-key replaces it", f.bcryptKeyID))
	}

	It("prints what it would do on a dry run and writes nothing", func(ctx SpecContext) {
		dry := tenancy(ctx, "import", "--source-url", databaseURL, "--mapping", mapping, "--dry-run", "--out", out)
		Expect(dry.code).To(Equal(2), "problems make exit status 2")
		Expect(dry.stdout).To(ContainSubstring("Would import (dry run: nothing was written) from acme-legacy (schema legacy)"))
		Expect(dry.stdout).To(MatchRegexp(`organizations\s+20\n`))
		Expect(dry.stdout).To(MatchRegexp(`users\s+200\n`))
		Expect(dry.stdout).To(ContainSubstring("org-01/03-members.yaml"))
		Expect(dry.stdout).To(ContainSubstring(`name "Globex_Corp" becomes "globex-corp"`))
		expectProblems(dry.stdout)
		Expect(out).NotTo(BeADirectory())
		var users int
		Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.users WHERE email LIKE 'person%'").Scan(&users)).To(Succeed())
		Expect(users).To(BeZero())
		var orgs tenancyv1.OrganizationList
		Expect(admin.List(ctx, &orgs, client.MatchingLabels{"tenancy.dev/imported-from": "acme-legacy"})).To(Succeed())
		Expect(orgs.Items).To(BeEmpty())
	})

	It("imports the organizations, people, keys and audit log, and names every row it cannot take", func(ctx SpecContext) {
		first = tenancy(ctx, args...)
		Expect(first.code).To(Equal(2), first.stderr)
		expectProblems(first.stdout)
		Expect(countsOf(first.stdout, "users")).To(Equal([4]int{200, 0, 0, 0}))
		Expect(countsOf(first.stdout, "audit rows")).To(Equal([4]int{f.auditRows, 0, 0, 0}))
		Expect(countsOf(first.stdout, "old API keys")).To(Equal([4]int{len(f.keys), 0, 0, 0}))
		// 20 × (namespace, organization, 2 projects, 10 + 2 memberships, 2 keys) + 2 keys + 1 membership
		// missing (the unknown role) + 1 TenantTable.
		objects := organizationCount*(1+2+usersPerOrg+2+2) + 2 + 1
		Expect(countsOf(first.stdout, "objects applied")).To(Equal([4]int{objects, 0, 0, 0}))
		Expect(first.stdout).To(ContainSubstring("agents: policy legacy_org_isolation of the old system"))
		Expect(first.stdout).To(ContainSubstring("agent_runs: no organization_id; run tenanttables/pending/agent-runs.sql with psql, then apply tenanttables/pending/agent-runs.yaml"))
		Expect(first.stdout).To(ContainSubstring(`role Owner becomes Admin: API keys are never Owner in Tenancy`))
		for _, name := range []string{"01-organization.yaml", "02-projects.yaml", "03-members.yaml", "04-apikeys.yaml"} {
			Expect(filepath.Join(out, "org-01", name)).To(BeARegularFile())
		}
		Expect(filepath.Join(out, "tenanttables", "tenanttables.yaml")).To(BeARegularFile())
		Expect(filepath.Join(out, "tenanttables", "pending", "agent-runs.sql")).To(BeARegularFile())
		Expect(filepath.Join(out, "org-01", "00-namespace.yaml")).NotTo(BeAnExistingFile(), "the operator makes the namespace")

		By("keeping the old ids: the domain rows' organization_id is the Organization's row id")
		for _, o := range f.orgs {
			org := &tenancyv1.Organization{}
			Expect(admin.Get(ctx, client.ObjectKey{Name: o.tenancyName()}, org)).To(Succeed())
			Expect(org.Status.ID).To(Equal(o.id))
			Expect(string(org.Spec.Tier)).To(Equal(map[string]string{"free": "Free", "Pro": "Pro", "enterprise": "Enterprise", "platinum": "Enterprise"}[o.tier]))
		}
	})

	It("makes every membership Active with its role", func(ctx SpecContext) {
		var memberships tenancyv1.MembershipList
		Expect(admin.List(ctx, &memberships, client.MatchingLabels{"tenancy.dev/imported-from": "acme-legacy"})).To(Succeed())
		Expect(memberships.Items).To(HaveLen(organizationCount*usersPerOrg + len(f.projectRoles)))
		want := map[string]string{}
		for _, u := range f.users {
			want[strings.ToLower(u.email)+" "] = u.role
		}
		for k, v := range f.projectRoles {
			want[k] = v
		}
		for _, m := range memberships.Items {
			Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive), "%s/%s", m.Namespace, m.Name)
			ready := meta.FindStatusCondition(m.Status.Conditions, tenancyv1.ReadyCondition)
			Expect(ready).NotTo(BeNil())
			Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			Expect(string(m.Spec.Role)).To(Equal(want[m.Spec.User+" "+m.Spec.Project]), "%s/%s", m.Namespace, m.Name)
		}
	})

	It("signs every person in with their old password, and rehashes it to argon2id", func(ctx SpecContext) {
		before := passwordChanges(ctx)
		for _, u := range f.users {
			status, _ := login(u.email, "wrong "+u.password, f.orgs[u.org].tenancyName())
			Expect(status).To(Equal(http.StatusUnauthorized), u.email)
			status, body := login(u.email, u.password, f.orgs[u.org].tenancyName())
			Expect(status).To(Equal(http.StatusOK), "%s: %s", u.email, body)
		}
		var bcryptLeft, argon int
		Expect(sqlPool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE password_hash LIKE '$2%'), count(*) FILTER (WHERE password_hash LIKE '$argon2id$%') FROM tenancy.users WHERE email LIKE 'person%'`).
			Scan(&bcryptLeft, &argon)).To(Succeed())
		Expect(bcryptLeft).To(BeZero())
		Expect(argon).To(Equal(len(f.users)))
		// The rehashed password still opens the account, and no password counts as changed.
		status, body := login(f.users[0].email, f.users[0].password, f.orgs[0].tenancyName())
		Expect(status).To(Equal(http.StatusOK), body)
		Expect(passwordChanges(ctx)).To(Equal(before))
	})

	It("keeps the old API keys working beside the new ones, and refuses the revoked one", func(ctx SpecContext) {
		key := f.keys[0] // org-01's "CI deploy"
		org := f.orgs[key.org]
		apiKey := &tenancyv1.APIKey{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: org.tenancyName(), Name: "ci-deploy"}, apiKey)).To(Succeed())
		oldKeyID := apiKey.Annotations["tenancy.dev/imported-key-id"]
		Expect(oldKeyID).To(HavePrefix("imp_"))
		Expect(first.stdout).To(ContainSubstring("api_keys id=%d → APIKey org-01/ci-deploy, old key id %s until", key.id, oldKeyID))
		var rowUID string
		Expect(sqlPool.QueryRow(ctx, "SELECT uid::text FROM tenancy.api_keys WHERE key_id = $1", oldKeyID).Scan(&rowUID)).To(Succeed())
		Expect(rowUID).To(Equal(string(apiKey.UID)), "the old key belongs to the APIKey that replaces it")

		claims := clientCredentials("", key.plaintext, http.StatusOK)
		Expect(claims["org"]).To(Equal(org.id))
		Expect(claims["role"]).To(Equal("Member"))
		Expect(claims["sub"]).To(Equal(oldKeyID))
		clientCredentials(oldKeyID, key.plaintext, http.StatusOK)
		clientCredentials(apiKey.Status.KeyID, key.plaintext, http.StatusUnauthorized)
		clientCredentials("", f.revokedKey, http.StatusUnauthorized)
		clientCredentials("", key.plaintext+"x", http.StatusUnauthorized)
		projectKey := clientCredentials("", f.keys[1].plaintext, http.StatusOK)
		Expect(projectKey["role"]).To(Equal("Viewer"))
		Expect(projectKey["project"]).To(Equal(org.projects[0]))
		root := clientCredentials("", f.keys[len(f.keys)-1].plaintext, http.StatusOK)
		Expect(root["role"]).To(Equal("Admin"), "an Owner key of the old system is Admin")

		By("the new key, in the APIKey's Secret")
		secret := &corev1.Secret{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: org.tenancyName(), Name: "ci-deploy-apikey"}, secret)).To(Succeed())
		clientCredentials(string(secret.Data["keyID"]), string(secret.Data["apiKey"]), http.StatusOK)
	})

	It("carries the audit log over with its times and actors", func(ctx SpecContext) {
		var imported int
		Expect(sqlPool.QueryRow(ctx, `SELECT count(*) FROM tenancy.audit_log WHERE details ? 'importID'`).Scan(&imported)).To(Succeed())
		Expect(imported).To(Equal(f.auditRows))
		var at time.Time
		var actor, action, org string
		var actorID *string
		var n float64
		Expect(sqlPool.QueryRow(ctx, `
			SELECT at, actor, actor_user_id::text, action, organization_id::text, (details ->> 'n')::float8
			FROM tenancy.audit_log WHERE details ->> 'importID' = 'acme-legacy/audit_logs/2'`).
			Scan(&at, &actor, &actorID, &action, &org, &n)).To(Succeed())
		Expect(at).To(BeTemporally("==", f.auditSample.Add(time.Minute)))
		Expect(actor).To(Equal(strings.ToLower(f.users[1].email)))
		Expect(actorID).To(HaveValue(Equal(f.users[1].id)), "the person keeps the old id")
		Expect(action).To(Equal("project.updated"))
		Expect(org).To(Equal(f.orgs[0].id))
		Expect(n).To(Equal(1.0))
	})

	It("changes nothing when run a second time", func(ctx SpecContext) {
		second := tenancy(ctx, args...)
		Expect(second.code).To(Equal(2), second.stderr)
		expectProblems(second.stdout)
		Expect(countsOf(second.stdout, "users")).To(Equal([4]int{0, 0, 200, 0}))
		Expect(countsOf(second.stdout, "audit rows")).To(Equal([4]int{0, 0, f.auditRows, 0}))
		files := countsOf(second.stdout, "manifest files")
		Expect(files[0:2]).To(Equal([]int{0, 0}))
		applied := countsOf(second.stdout, "objects applied")
		Expect(applied[0:2]).To(Equal([]int{0, 0}), "no object created or changed")
		Expect(countsOf(second.stdout, "old API keys")).To(Equal([4]int{0, 0, len(f.keys), 0}))
		var bcryptLeft, imported int
		Expect(sqlPool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE password_hash LIKE '$2%'), count(*) FROM tenancy.users WHERE email LIKE 'person%'`).
			Scan(&bcryptLeft, &imported)).To(Succeed())
		Expect(bcryptLeft).To(BeZero(), "a rehashed password is never put back")
		Expect(imported).To(Equal(len(f.users)))
	})

	It("isolates the application's rows per organization under RLS, the table without the column too", func(ctx SpecContext) {
		agents := &tenancyv1.TenantTable{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: "agents"}, agents)).To(Succeed())
		Expect(meta.IsStatusConditionTrue(agents.Status.Conditions, tenancyv1.ReadyCondition)).To(BeTrue())

		By("running the SQL the import wrote for agent_runs with psql, then its TenantTable")
		psql, err := exec.LookPath("psql")
		Expect(err).NotTo(HaveOccurred(), "psql comes with PostgreSQL (hack/postgres.sh)")
		output, err := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", databaseURL,
			"-f", filepath.Join(out, "tenanttables", "pending", "agent-runs.sql")).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(output))
		applyFile(ctx, filepath.Join(out, "tenanttables", "pending", "agent-runs.yaml"))
		runs := &tenancyv1.TenantTable{}
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKey{Name: "agent-runs"}, runs)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(runs.Status.Conditions, tenancyv1.ReadyCondition)).To(BeTrue(), "%v", runs.Status.Conditions)
		}).WithContext(ctx).Should(Succeed())
		// As the report says: the old system's permissive policy goes once the TenantTable is Ready.
		_, err = sqlPool.Exec(ctx, "DROP POLICY legacy_org_isolation ON legacy.agents")
		Expect(err).NotTo(HaveOccurred())

		for _, org := range []fixtureOrg{f.orgs[0], f.orgs[1]} {
			owner := f.users[indexOf(f.orgs, org)*usersPerOrg]
			status, body := login(owner.email, owner.password, org.tenancyName())
			Expect(status).To(Equal(http.StatusOK), "%v", body)
			tctx := claimsOf(body["access_token"].(string))["tctx"].(string)
			asApp(ctx, tctx, func(tx pgx.Tx) {
				var rows, foreign int
				Expect(tx.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE organization_id <> $1) FROM legacy.agents", org.id).
					Scan(&rows, &foreign)).To(Succeed())
				Expect([]int{rows, foreign}).To(Equal([]int{agentsPerOrg, 0}), org.slug)
				Expect(tx.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE organization_id <> $1) FROM legacy.agent_runs", org.id).
					Scan(&rows, &foreign)).To(Succeed())
				Expect([]int{rows, foreign}).To(Equal([]int{agentsPerOrg * runsPerAgent, 0}), org.slug)
			})
		}
		By("an insert that leaves the column out takes it from the agent, and never from another organization's")
		owner := f.users[0]
		_, body := login(owner.email, owner.password, f.orgs[0].tenancyName())
		tctx := claimsOf(body["access_token"].(string))["tctx"].(string)
		var ownAgent, otherAgent string
		Expect(sqlPool.QueryRow(ctx, "SELECT id::text FROM legacy.agents WHERE organization_id = $1 LIMIT 1", f.orgs[0].id).Scan(&ownAgent)).To(Succeed())
		Expect(sqlPool.QueryRow(ctx, "SELECT id::text FROM legacy.agents WHERE organization_id = $1 LIMIT 1", f.orgs[1].id).Scan(&otherAgent)).To(Succeed())
		asApp(ctx, tctx, func(tx pgx.Tx) {
			var org string
			Expect(tx.QueryRow(ctx, "INSERT INTO legacy.agent_runs (id, agent_id, output) VALUES (100000, $1, 'new') RETURNING organization_id::text", ownAgent).
				Scan(&org)).To(Succeed())
			Expect(org).To(Equal(f.orgs[0].id))
		})
		err = inApp(ctx, tctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO legacy.agent_runs (id, agent_id, output) VALUES (100001, $1, 'stolen')", otherAgent)
			return err
		})
		// The trigger's lookup sees no agent of another organization: the row has no organization,
		// which the policies refuse.
		Expect(err).To(MatchError(ContainSubstring(`violates row-level security policy for table "agent_runs"`)),
			"a run of another organization's agent is refused")
	})

	It("revokes an old key with the APIKey that took it over", func(ctx SpecContext) {
		key := f.keys[0]
		apiKey := &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: f.orgs[key.org].tenancyName(), Name: "ci-deploy"}}
		Expect(admin.Delete(ctx, apiKey)).To(Succeed())
		Eventually(func() int {
			return clientCredentialsStatus("", key.plaintext)
		}).WithContext(ctx).Should(Equal(http.StatusUnauthorized))
		clientCredentials("", f.keys[2].plaintext, http.StatusOK) // org-02's key is untouched
	})

	It("never brings back what was deleted since, on a later run", func(ctx SpecContext) {
		org := f.orgs[2].tenancyName()
		var before tenancyv1.MembershipList
		Expect(admin.List(ctx, &before, client.InNamespace(org))).To(Succeed())
		gone := before.Items[0]
		for _, m := range before.Items {
			if m.Spec.Role == tenancyv1.RoleMember {
				gone = m
			}
		}
		Expect(admin.Delete(ctx, &gone)).To(Succeed())
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKeyFromObject(&gone), &tenancyv1.Membership{})
		}).WithContext(ctx).Should(MatchError(ContainSubstring("not found")))

		again := tenancy(ctx, args...)
		Expect(again.code).To(Equal(2), again.stderr)
		Expect(again.stdout).To(ContainSubstring("org-03/03-members.yaml: Membership %s/%s: an earlier run created it and it was deleted since; not created again", org, gone.Name))
		Expect(again.stdout).To(ContainSubstring("org-01/04-apikeys.yaml: APIKey org-01/ci-deploy: an earlier run created it and it was deleted since; not created again"))
		Expect(countsOf(again.stdout, "objects applied")[0]).To(BeZero())
		var after tenancyv1.MembershipList
		Expect(admin.List(ctx, &after, client.InNamespace(org))).To(Succeed())
		Expect(after.Items).To(HaveLen(len(before.Items) - 1))
	})
})

func indexOf(orgs []fixtureOrg, org fixtureOrg) int {
	for i, o := range orgs {
		if o.id == org.id {
			return i
		}
	}
	return -1
}

// asApp runs fn in a transaction as the application would: as tenancy_app, with the context of
// a token set.
func asApp(ctx context.Context, tctx string, fn func(pgx.Tx)) {
	GinkgoHelper()
	Expect(inApp(ctx, tctx, func(tx pgx.Tx) error { fn(tx); return nil })).To(Succeed())
}

// inApp is asApp for fn that may fail; the transaction is rolled back either way.
func inApp(ctx context.Context, tctx string, fn func(pgx.Tx) error) error {
	conn, err := sqlPool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true)", tctx); err != nil {
		return err
	}
	return fn(tx)
}

// claimsOf reads a token's claims; authd signed it, and the specs check what it says.
func claimsOf(token string) jwt.MapClaims {
	GinkgoHelper()
	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(token, claims)
	Expect(err).NotTo(HaveOccurred())
	return claims
}

// tradeKey presents a key at authd's token endpoint (client_credentials) and answers the status
// and the body.
func tradeKey(id, secret string) (int, map[string]any) {
	GinkgoHelper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {secret}}
	if id != "" {
		form.Set("client_id", id)
	}
	resp, err := http.PostForm(authdURL+"/oauth2/token", form)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var answer map[string]any
	Expect(json.NewDecoder(resp.Body).Decode(&answer)).To(Succeed())
	return resp.StatusCode, answer
}

func clientCredentialsStatus(id, secret string) int {
	GinkgoHelper()
	status, _ := tradeKey(id, secret)
	return status
}

// clientCredentials trades a key, expects the status want and answers the token's claims.
func clientCredentials(id, secret string, want int) jwt.MapClaims {
	GinkgoHelper()
	status, answer := tradeKey(id, secret)
	Expect(status).To(Equal(want), "%v", answer)
	if want != http.StatusOK {
		return nil
	}
	return claimsOf(answer["access_token"].(string))
}

// applyFile creates the objects of a manifest file the import wrote.
func applyFile(ctx context.Context, path string) {
	GinkgoHelper()
	raw, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	obj := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal(raw, &obj.Object)).To(Succeed())
	Expect(admin.Create(ctx, obj)).To(Succeed())
}

// passwordChanges reads every user's password_changed_at.
func passwordChanges(ctx context.Context) map[string]time.Time {
	GinkgoHelper()
	rows, err := sqlPool.Query(ctx, "SELECT email::text, password_changed_at FROM tenancy.users WHERE email LIKE 'person%'")
	Expect(err).NotTo(HaveOccurred())
	changes := map[string]time.Time{}
	var email string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&email, &at}, func() error {
		changes[email] = at
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
	return changes
}

// login signs in at authd and answers the status and the body.
func login(email, password, organization string) (int, map[string]any) {
	GinkgoHelper()
	body, err := json.Marshal(map[string]string{"email": email, "password": password, "organization": organization})
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.Post(authdURL+"/auth/login", "application/json", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer
}
