package upgrade_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// tenant is one organization made from the release's config/samples.
type tenant struct {
	name string
	// ownNamespace applies the samples' Namespace first, so that the Organization adopts it;
	// without, the operator creates the namespace.
	ownNamespace bool
}

// sampleTenants reads the release's config/samples (in its kustomization's order) and returns
// them as every tenant's manifests, in apply order: the samples' organization renamed to each
// tenant's name. Cluster-scoped objects other than the tenants' own (the TenantTable) come once.
func sampleTenants(tree string, tenants []tenant) []*unstructured.Unstructured {
	GinkgoHelper()
	dir := filepath.Join(tree, "config", "samples")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var kustomization struct{ Resources []string }
	Expect(yaml.Unmarshal(data, &kustomization)).To(Succeed())
	var samples []byte
	for _, resource := range kustomization.Resources {
		doc, err := os.ReadFile(filepath.Join(dir, resource))
		Expect(err).NotTo(HaveOccurred())
		samples = append(append(samples, doc...), "\n---\n"...)
	}
	var sampleOrg string
	for _, obj := range decodeManifests(samples, dir) {
		if obj.GetKind() == "Organization" {
			sampleOrg = obj.GetName()
		}
	}
	Expect(sampleOrg).NotTo(BeEmpty(), "%s holds no Organization", dir)

	var objs []*unstructured.Unstructured
	seen := map[string]bool{}
	for _, t := range tenants {
		for _, obj := range decodeManifests([]byte(strings.ReplaceAll(string(samples), sampleOrg, t.name)), dir) {
			if obj.GetKind() == "Namespace" && !t.ownNamespace {
				continue
			}
			key := obj.GetKind() + " " + obj.GetName()
			if obj.GetNamespace() == "" && obj.GetKind() != "Namespace" && obj.GetKind() != "Organization" {
				if seen[key] {
					continue
				}
				seen[key] = true
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// applyTenants applies the manifests in order as a GitOps tool would, retrying each until the API
// server takes it: an Organization's namespace is open to its objects once the webhooks have
// seen the Organization.
func applyTenants(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, obj := range objs {
		Eventually(func() error {
			return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(fieldManager))
		}).WithContext(ctx).Should(Succeed(), "applying %s %s", obj.GetKind(), name(obj))
	}
}

// tenancyObjects are the objects of the tenancy.dev group among objs.
func tenancyObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	return slices.DeleteFunc(slices.Clone(objs), func(obj *unstructured.Unstructured) bool {
		return obj.GroupVersionKind().Group != tenancyv1.GroupVersion.Group
	})
}

// status is the part of a tenancy object's status that the test reads.
type status struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Conditions         []metav1.Condition `json:"conditions"`
	ID                 string             `json:"id"`
	KeyID              string             `json:"keyID"`
	Policies           []string           `json:"policies"`
}

func statusOf(obj *unstructured.Unstructured) (status, error) {
	var s status
	m, _, err := unstructured.NestedMap(obj.Object, "status")
	if err == nil {
		err = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &s)
	}
	return s, err
}

// get reads obj's current state from the API server.
func get(ctx context.Context, c client.Client, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), live)
	return live, err
}

// notReady says why a tenancy object is not Ready at its generation, as kstatus (kubectl wait,
// Argo CD, Flux) and the Ready condition tell, naming it and its conditions; "" when it is.
func notReady(obj *unstructured.Unstructured) string {
	s, err := statusOf(obj)
	if err != nil {
		return fmt.Sprintf("%s %s: reading its status: %v", obj.GetKind(), name(obj), err)
	}
	var problems []string
	if obj.GetDeletionTimestamp() != nil {
		problems = append(problems, fmt.Sprintf("being deleted (finalizers %v)", obj.GetFinalizers()))
	}
	if s.ObservedGeneration != obj.GetGeneration() {
		problems = append(problems, fmt.Sprintf("observedGeneration %d, generation %d", s.ObservedGeneration, obj.GetGeneration()))
	}
	if ready := findCondition(s.Conditions, tenancyv1.ReadyCondition); ready == nil || ready.Status != metav1.ConditionTrue {
		problems = append(problems, "not Ready")
	}
	if result, err := kstatus.Compute(obj); err != nil {
		problems = append(problems, fmt.Sprintf("kstatus: %v", err))
	} else if result.Status != kstatus.CurrentStatus {
		problems = append(problems, fmt.Sprintf("kstatus %s (%s)", result.Status, result.Message))
	}
	if len(problems) == 0 {
		return ""
	}
	var conditions []string
	for _, c := range s.Conditions {
		conditions = append(conditions, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("%s %s: %s; conditions [%s]", obj.GetKind(), name(obj), strings.Join(problems, ", "), strings.Join(conditions, "; "))
}

func findCondition(conditions []metav1.Condition, conditionType string) *metav1.Condition {
	for i := range conditions {
		if conditions[i].Type == conditionType {
			return &conditions[i]
		}
	}
	return nil
}

// expectAllReady checks that every tenancy object among objs is Ready at its generation.
func expectAllReady(g Gomega, ctx context.Context, c client.Client, objs []*unstructured.Unstructured) {
	var problems []string
	for _, obj := range tenancyObjects(objs) {
		live, err := get(ctx, c, obj)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", obj.GetKind(), name(obj), err))
			continue
		}
		if why := notReady(live); why != "" {
			problems = append(problems, why)
		}
	}
	g.Expect(problems).To(BeEmpty(), "%d of %d tenancy objects are not Ready", len(problems), len(tenancyObjects(objs)))
}

// waitAllReady waits until every tenancy object among objs is Ready at its generation.
func waitAllReady(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) {
	GinkgoHelper()
	Eventually(func(g Gomega) { expectAllReady(g, ctx, c, objs) }).WithContext(ctx).Should(Succeed())
}

// controllerCounts is how many objects of objs each controller reconciles.
func controllerCounts(objs []*unstructured.Unstructured) map[string]int {
	counts := map[string]int{}
	for _, obj := range tenancyObjects(objs) {
		counts[strings.ToLower(obj.GetKind())]++
	}
	return counts
}

// snapshot is what an upgrade must keep: the objects' identities, their rows whole, the
// invitations and API keys issued, the Secrets the operator wrote, the applied migrations and the
// TenantTables' policies.
type snapshot struct {
	Objects       map[string]objectState
	Organizations map[types.UID]testenv.OrganizationRow
	Projects      map[types.UID]testenv.ProjectRow
	Memberships   map[types.UID]testenv.MembershipRow
	Invitations   map[types.UID][]testenv.InvitationRow
	APIKeys       map[types.UID][]testenv.APIKeyRow
	Secrets       map[string]secretState
	Migrations    []migrationRow
	Policies      map[string]tablePolicies
}

// objectState is a tenancy object's identity: its UID, its generation (a spec nobody changed
// keeps it) and the row id and key id its status shows.
type objectState struct {
	UID        types.UID
	Generation int64
	ID         string
	KeyID      string
}

// secretState is a Secret the operator wrote.
type secretState struct {
	UID  types.UID
	Data map[string][]byte
}

// migrationRow is a row of tenancy.schema_migrations.
type migrationRow struct {
	Version   int    `db:"version"`
	Name      string `db:"name"`
	Checksum  string `db:"checksum"`
	AppliedAt string `db:"applied_at"`
}

// tablePolicies is a TenantTable's table: whether row-level security is on and forced, and the
// names of its policies.
type tablePolicies struct {
	RowSecurity, Forced bool
	Policies            []string
}

// takeSnapshot reads the state of the tenancy objects among objs, their rows, and every Secret
// the operator manages.
func (w *world) takeSnapshot(ctx context.Context, objs []*unstructured.Unstructured) snapshot {
	GinkgoHelper()
	s := snapshot{
		Objects:       map[string]objectState{},
		Organizations: map[types.UID]testenv.OrganizationRow{},
		Projects:      map[types.UID]testenv.ProjectRow{},
		Memberships:   map[types.UID]testenv.MembershipRow{},
		Invitations:   map[types.UID][]testenv.InvitationRow{},
		APIKeys:       map[types.UID][]testenv.APIKeyRow{},
		Secrets:       map[string]secretState{},
		Policies:      map[string]tablePolicies{},
	}
	for _, obj := range tenancyObjects(objs) {
		live, err := get(ctx, w.kube, obj)
		Expect(err).NotTo(HaveOccurred(), "reading %s %s", obj.GetKind(), name(obj))
		st, err := statusOf(live)
		Expect(err).NotTo(HaveOccurred())
		uid := live.GetUID()
		s.Objects[obj.GetKind()+" "+name(obj)] = objectState{UID: uid, Generation: live.GetGeneration(), ID: st.ID, KeyID: st.KeyID}
		what := fmt.Sprintf("the row of %s %s (uid %s)", obj.GetKind(), name(obj), uid)
		switch obj.GetKind() {
		case "Organization":
			s.Organizations[uid], err = testenv.ReadOrganization(ctx, w.sql, "o.uid = $1", uid)
		case "Project":
			s.Projects[uid], err = testenv.ReadProject(ctx, w.sql, "p.uid = $1", uid)
		case "Membership":
			s.Memberships[uid], err = testenv.ReadMembership(ctx, w.sql, "m.uid = $1", uid)
			if err == nil {
				s.Invitations[uid], err = readInvitations(ctx, w, uid)
			}
		case "APIKey":
			s.APIKeys[uid], err = testenv.ReadAPIKeys(ctx, w.sql, "k.uid = $1", uid)
		case "TenantTable":
			s.Policies[obj.GetName()], err = readPolicies(ctx, w, live)
		}
		Expect(err).NotTo(HaveOccurred(), "reading %s", what)
	}
	var secrets corev1.SecretList
	Expect(w.kube.List(ctx, &secrets, client.MatchingLabels{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue})).To(Succeed())
	for _, secret := range secrets.Items {
		s.Secrets[secret.Namespace+"/"+secret.Name] = secretState{UID: secret.UID, Data: secret.Data}
	}
	s.Migrations = w.readMigrations(ctx)
	return s
}

// readMigrations reads tenancy.schema_migrations, lowest version first.
func (w *world) readMigrations(ctx context.Context) []migrationRow {
	GinkgoHelper()
	rows, err := w.sql.Query(ctx, "SELECT version, name, checksum, applied_at::text AS applied_at FROM tenancy.schema_migrations ORDER BY version")
	Expect(err).NotTo(HaveOccurred())
	migrations, err := pgx.CollectRows(rows, pgx.RowToStructByName[migrationRow])
	Expect(err).NotTo(HaveOccurred())
	return migrations
}

// readInvitations reads every invitation of the membership with that uid, oldest first.
func readInvitations(ctx context.Context, w *world, uid types.UID) ([]testenv.InvitationRow, error) {
	var ids []string
	rows, err := w.sql.Query(ctx, `SELECT i.id::text FROM tenancy.invitations i JOIN tenancy.memberships m ON m.id = i.membership_id
		WHERE m.uid = $1 ORDER BY i.id`, uid)
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var invitations []testenv.InvitationRow
	for _, id := range ids {
		if err != nil {
			break
		}
		var row testenv.InvitationRow
		row, err = testenv.ReadInvitation(ctx, w.sql, "i.id = $1", id)
		invitations = append(invitations, row)
	}
	return invitations, err
}

// readPolicies reads the row-level security of a TenantTable's table.
func readPolicies(ctx context.Context, w *world, tt *unstructured.Unstructured) (tablePolicies, error) {
	var p tablePolicies
	schema, _, _ := unstructured.NestedString(tt.Object, "spec", "schema")
	table, _, _ := unstructured.NestedString(tt.Object, "spec", "table")
	if schema == "" {
		schema = "public"
	}
	err := w.sql.QueryRow(ctx, `SELECT c.relrowsecurity, c.relforcerowsecurity,
			coalesce((SELECT array_agg(policyname::text ORDER BY policyname) FROM pg_policies WHERE schemaname = $1 AND tablename = $2), '{}')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
		schema, table).Scan(&p.RowSecurity, &p.Forced, &p.Policies)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("table %s.%s does not exist", schema, table)
	}
	return p, err
}
