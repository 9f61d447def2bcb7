package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func organization(name string) *tenancyv1.Organization {
	return &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tenancyv1.OrganizationSpec{DisplayName: "Organization " + name, Tier: tenancyv1.TierPro}}
}

func project(namespace, name string) *tenancyv1.Project {
	return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: tenancyv1.ProjectSpec{DisplayName: "Project " + name}}
}

func membership(namespace, name, user string, role tenancyv1.Role, project string) *tenancyv1.Membership {
	return &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: tenancyv1.MembershipSpec{User: user, Role: role, Project: project}}
}

func apiKey(namespace, name string, role tenancyv1.Role, project string) *tenancyv1.APIKey {
	return &tenancyv1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: tenancyv1.APIKeySpec{Role: role, Project: project}}
}

// tenantObjects is an organization's namespaced objects: projects p0…p(n-1), an Owner, an Admin,
// a Viewer of p0, an organization-wide API key and one scoped to p0.
func tenantObjects(org string, projects int) []client.Object {
	var objs []client.Object
	for i := range projects {
		objs = append(objs, project(org, fmt.Sprintf("p%d", i)))
	}
	return append(objs,
		membership(org, "owner", "owner@"+org+".example", tenancyv1.RoleOwner, ""),
		membership(org, "admin", "admin@"+org+".example", tenancyv1.RoleAdmin, ""),
		membership(org, "viewer", "viewer@"+org+".example", tenancyv1.RoleViewer, "p0"),
		apiKey(org, "ci", tenancyv1.RoleMember, ""),
		apiKey(org, "reader", tenancyv1.RoleViewer, "p0"),
	)
}

// applyAll creates the objects with a few workers, retrying each until it exists, as a GitOps
// tool would: while no manager serves the webhooks, the API server refuses tenancy objects.
func applyAll(ctx context.Context, c client.Client, objs []client.Object) error {
	return eachWithRetry(ctx, objs, func(obj client.Object) error {
		if err := c.Create(ctx, obj.DeepCopyObject().(client.Object)); !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
}

// deleteAll asks for the objects' deletion, retrying each until the API server accepts it.
func deleteAll(ctx context.Context, c client.Client, objs []client.Object) error {
	return eachWithRetry(ctx, objs, func(obj client.Object) error {
		return client.IgnoreNotFound(c.Delete(ctx, obj.DeepCopyObject().(client.Object)))
	})
}

func eachWithRetry(ctx context.Context, objs []client.Object, do func(client.Object) error) error {
	work := make(chan client.Object)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for obj := range work {
				var last error
				err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
					last = do(obj)
					return last == nil, nil
				})
				if err != nil {
					errs[w] = errors.Join(errs[w], fmt.Errorf("%s %s/%s: %w", kindOf(obj), obj.GetNamespace(), obj.GetName(), last))
				}
			}
		})
	}
	for _, obj := range objs {
		work <- obj
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

func kindOf(obj client.Object) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", obj), "*v1alpha1.")
}

// tenancyObjects lists every tenancy object in the cluster.
func tenancyObjects(ctx context.Context, c client.Client) ([]tenancyv1.Object, error) {
	var orgs tenancyv1.OrganizationList
	var projects tenancyv1.ProjectList
	var memberships tenancyv1.MembershipList
	var keys tenancyv1.APIKeyList
	var tables tenancyv1.TenantTableList
	for _, list := range []client.ObjectList{&orgs, &projects, &memberships, &keys, &tables} {
		if err := c.List(ctx, list); err != nil {
			return nil, err
		}
	}
	var objs []tenancyv1.Object
	for i := range orgs.Items {
		objs = append(objs, &orgs.Items[i])
	}
	for i := range projects.Items {
		objs = append(objs, &projects.Items[i])
	}
	for i := range memberships.Items {
		objs = append(objs, &memberships.Items[i])
	}
	for i := range keys.Items {
		objs = append(objs, &keys.Items[i])
	}
	for i := range tables.Items {
		objs = append(objs, &tables.Items[i])
	}
	return objs, nil
}

// expectAllReady checks that every tenancy object is Ready at its generation, and that none is
// being deleted (a finalizer left behind keeps it so).
func expectAllReady(g Gomega, ctx context.Context, c client.Client) {
	objs, err := tenancyObjects(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	var notReady []string
	for _, obj := range objs {
		ready := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
		switch {
		case !obj.GetDeletionTimestamp().IsZero():
			notReady = append(notReady, fmt.Sprintf("%s %s/%s: being deleted, finalizers %v", kindOf(obj), obj.GetNamespace(), obj.GetName(), obj.GetFinalizers()))
		case ready == nil || ready.Status != metav1.ConditionTrue || obj.CommonStatusRef().ObservedGeneration != obj.GetGeneration():
			why := "no Ready condition"
			if ready != nil {
				why = fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
			}
			notReady = append(notReady, fmt.Sprintf("%s %s/%s: %s", kindOf(obj), obj.GetNamespace(), obj.GetName(), why))
		}
	}
	g.Expect(notReady).To(BeEmpty(), "%d of %d objects are not Ready", len(notReady), len(objs))
}

// expectRowsMatch checks that the identity rows are exactly those of the live objects, each once,
// with the row id each object's status shows: organizations, projects and memberships by uid,
// and one current, unrevoked key per APIKey (every key of a deleted APIKey is revoked).
func expectRowsMatch(g Gomega, ctx context.Context, s *stack) {
	objs, err := tenancyObjects(ctx, s.kube)
	g.Expect(err).NotTo(HaveOccurred())
	want := map[string]map[string]string{"organizations": {}, "projects": {}, "memberships": {}, "api_keys": {}}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *tenancyv1.Organization:
			want["organizations"][string(o.UID)] = o.Status.ID
		case *tenancyv1.Project:
			want["projects"][string(o.UID)] = o.Status.ID
		case *tenancyv1.Membership:
			want["memberships"][string(o.UID)] = o.Status.ID
		case *tenancyv1.APIKey:
			want["api_keys"][string(o.UID)] = o.Status.ID
		}
	}
	for table, rows := range want {
		query := "SELECT uid::text, id::text FROM tenancy." + table
		if table == "api_keys" {
			query = "SELECT uid::text, id::text FROM tenancy.api_keys WHERE revoked_at IS NULL AND superseded_at IS NULL"
			var stray int
			g.Expect(s.sql.QueryRow(ctx, `SELECT count(*) FROM tenancy.api_keys WHERE revoked_at IS NULL
				AND NOT (uid::text = ANY($1))`, keysOf(rows)).Scan(&stray)).To(Succeed())
			g.Expect(stray).To(BeZero(), "unrevoked keys of deleted APIKeys")
		}
		got := map[string]string{}
		dbRows, err := s.sql.Query(ctx, query)
		g.Expect(err).NotTo(HaveOccurred())
		for dbRows.Next() {
			var uid, id string
			g.Expect(dbRows.Scan(&uid, &id)).To(Succeed())
			_, twice := got[uid]
			g.Expect(twice).To(BeFalse(), "%s has two rows for object %s", table, uid)
			got[uid] = id
		}
		g.Expect(dbRows.Err()).NotTo(HaveOccurred())
		g.Expect(rowDifferences(rows, got)).To(BeEmpty(), "tenancy.%s against the live objects (%d objects, %d rows)", table, len(rows), len(got))
	}
}

// rowDifferences lists the objects (uid → the row id in their status) without their row, the
// rows of no live object, and rows whose id differs from the status.
func rowDifferences(objects, rows map[string]string) []string {
	var diffs []string
	for uid, id := range objects {
		switch rowID, ok := rows[uid]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("object %s has no row", uid))
		case rowID != id:
			diffs = append(diffs, fmt.Sprintf("object %s shows row %s, its row is %s", uid, id, rowID))
		}
	}
	for uid, id := range rows {
		if _, ok := objects[uid]; !ok {
			diffs = append(diffs, fmt.Sprintf("row %s belongs to no live object (uid %s)", id, uid))
		}
	}
	slices.Sort(diffs)
	return diffs
}

func keysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// countRows runs a count query.
func countRows(ctx context.Context, s *stack, query string, args ...any) int {
	GinkgoHelper()
	var n int
	Expect(s.sql.QueryRow(ctx, query, args...).Scan(&n)).To(Succeed())
	return n
}

// rowCount is countRows for Eventually: a failing query (a manager that has not migrated the
// schema yet) fails the attempt, not the spec.
func rowCount(ctx context.Context, s *stack, query string) func(g Gomega) int {
	return func(g Gomega) int {
		var n int
		g.Expect(s.sql.QueryRow(ctx, query).Scan(&n)).To(Succeed())
		return n
	}
}

// state is what a reconcile could write: the resourceVersion of every tenancy object and of
// every Namespace, Secret, Role and RoleBinding in organization namespaces; the row version
// (xmin) of every identity row; and the length of the audit log.
type state struct {
	Versions map[string]string
	Rows     map[string]string
	Audit    int
}

// changesSince lists what differs from an earlier state.
func (st state) changesSince(earlier state) []string {
	var changes []string
	diff := func(what string, before, after map[string]string) {
		for key, v := range after {
			if old, ok := before[key]; !ok {
				changes = append(changes, fmt.Sprintf("%s %s: new", what, key))
			} else if old != v {
				changes = append(changes, fmt.Sprintf("%s %s: %s → %s", what, key, old, v))
			}
		}
		for key := range before {
			if _, ok := after[key]; !ok {
				changes = append(changes, fmt.Sprintf("%s %s: gone", what, key))
			}
		}
	}
	diff("resourceVersion of", earlier.Versions, st.Versions)
	diff("xmin of row", earlier.Rows, st.Rows)
	if st.Audit != earlier.Audit {
		changes = append(changes, fmt.Sprintf("audit log: %d → %d rows", earlier.Audit, st.Audit))
	}
	slices.Sort(changes)
	return changes
}

func currentState(ctx context.Context, s *stack) state {
	GinkgoHelper()
	st := state{Versions: map[string]string{}, Rows: map[string]string{}}
	objs, err := tenancyObjects(ctx, s.kube)
	Expect(err).NotTo(HaveOccurred())
	namespaces := map[string]bool{}
	for _, obj := range objs {
		st.Versions[kindOf(obj)+" "+obj.GetNamespace()+"/"+obj.GetName()] = obj.GetResourceVersion()
		if org, ok := obj.(*tenancyv1.Organization); ok {
			namespaces[org.NamespaceName()] = true
		}
	}
	for ns := range namespaces {
		var namespace corev1.Namespace
		Expect(s.kube.Get(ctx, client.ObjectKey{Name: ns}, &namespace)).To(Succeed())
		st.Versions["Namespace "+ns] = namespace.ResourceVersion
		var secrets corev1.SecretList
		var roles rbacv1.RoleList
		var bindings rbacv1.RoleBindingList
		for _, list := range []client.ObjectList{&secrets, &roles, &bindings} {
			Expect(s.kube.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		}
		for _, item := range secrets.Items {
			st.Versions["Secret "+ns+"/"+item.Name] = item.ResourceVersion
		}
		for _, item := range roles.Items {
			st.Versions["Role "+ns+"/"+item.Name] = item.ResourceVersion
		}
		for _, item := range bindings.Items {
			st.Versions["RoleBinding "+ns+"/"+item.Name] = item.ResourceVersion
		}
	}
	for _, table := range []string{"organizations", "projects", "users", "memberships", "api_keys", "invitations"} {
		rows, err := s.sql.Query(ctx, "SELECT id::text, xmin::text FROM tenancy."+table)
		Expect(err).NotTo(HaveOccurred())
		for rows.Next() {
			var id, xmin string
			Expect(rows.Scan(&id, &xmin)).To(Succeed())
			st.Rows[table+" "+id] = xmin
		}
		Expect(rows.Err()).NotTo(HaveOccurred())
	}
	st.Audit = countRows(ctx, s, "SELECT count(*) FROM tenancy.audit_log")
	return st
}

// metrics reads a manager's Prometheus metrics: sample name with labels → value.
func metrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	samples := map[string]float64{}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			samples[line[:i]] = v
		}
	}
	return samples, scanner.Err()
}

// expectPassDone checks that a manager has reconciled at least as many objects of each kind as
// exist, and that its queues are empty and its workers idle: it has been over everything once.
func expectPassDone(g Gomega, ctx context.Context, s *stack, m *manager) {
	objs, err := tenancyObjects(ctx, s.kube)
	g.Expect(err).NotTo(HaveOccurred())
	count := map[string]int{}
	for _, obj := range objs {
		count[strings.ToLower(kindOf(obj))]++
	}
	samples, err := metrics(ctx, m.metricsURL)
	g.Expect(err).NotTo(HaveOccurred())
	for controller, n := range count {
		g.Expect(reconciles(samples, controller)).To(BeNumerically(">=", n), "reconciles of %s", controller)
		g.Expect(samples[fmt.Sprintf(`workqueue_depth{controller=%q,name=%q}`, controller, controller)]).To(BeZero(), "queue of %s", controller)
		g.Expect(samples[fmt.Sprintf(`controller_runtime_active_workers{controller=%q}`, controller)]).To(BeZero(), "busy workers of %s", controller)
	}
}

// reconciles is how many reconciles a controller has finished, whatever their result.
func reconciles(samples map[string]float64, controller string) float64 {
	total := 0.0
	for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
		total += samples[fmt.Sprintf(`controller_runtime_reconcile_total{controller=%q,result=%q}`, controller, result)]
	}
	return total
}
