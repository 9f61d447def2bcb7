package importer

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// Config is one import.
type Config struct {
	Mapping Mapping
	// SourceURL is the old system's database; DatabaseURL is Tenancy's (they may be the same
	// database: Tenancy's schema beside the application's tables).
	SourceURL, DatabaseURL string
	// OutDir receives the manifests; empty writes none.
	OutDir string
	// Kube, when set, is the cluster: the import checks it for Organizations and namespaces it must
	// not take over, and reads the APIKeys that the old keys belong to. With Apply it also
	// creates the objects, waiting up to Wait for them to be Ready.
	Kube  client.Client
	Apply bool
	Wait  time.Duration
	// AdoptNamespaces are existing namespaces that the organizations of their names may adopt.
	AdoptNamespaces []string
	// DryRun reads the source and reports what the import would write, and writes nothing.
	DryRun bool
	// OldKeysUntil is when the old API keys stop working.
	OldKeysUntil time.Time
	// OperatorNamespace is the namespace no organization may take.
	OperatorNamespace string
	// Actor names the import in the audit rows it writes.
	Actor string
	// Progress receives progress lines (a bar when Terminal); Report the final report.
	Progress io.Writer
	Terminal bool
	Report   io.Writer
}

// Result is what an import did.
type Result struct {
	Plan     *Plan
	Counts   map[string]Counts
	Files    []string // written under OutDir, in order
	Problems []Problem
	// Notes are what the run left alone on purpose (deleted since an earlier run).
	Notes []Problem
}

// The kinds the report counts.
const (
	kindUsers     = "users"
	kindAudit     = "audit rows"
	kindOldKeys   = "old API keys"
	kindFiles     = "manifest files"
	kindObjects   = "objects applied"
	kindReadyWait = "objects Ready"
)

// Run imports: it reads the source, decides the plan, writes the rows, the manifests and (with
// Kube) applies them, then reports. Each step is idempotent, so a run that was interrupted, or
// one run again after the source changed, goes on from where the database and the cluster are.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	source, err := pgx.Connect(ctx, cfg.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the source database: %w", err)
	}
	defer source.Close(context.Background())
	// Read everything in one snapshot, so the rows agree with each other.
	tx, err := source.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	data, err := readSource(ctx, tx.Conn(), cfg.Mapping)
	_ = tx.Rollback(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	opts := Options{OldKeysUntil: cfg.OldKeysUntil, Now: now, OperatorNamespace: cfg.OperatorNamespace, AdoptNamespaces: cfg.AdoptNamespaces}
	if cfg.Kube != nil {
		if opts.Cluster, err = readCluster(ctx, cfg.Kube); err != nil {
			return nil, err
		}
	}
	plan := newPlan(data, cfg.Mapping, opts)
	files, err := manifests(plan, cfg.Mapping.Source)
	if err != nil {
		return nil, err
	}
	result := &Result{Plan: plan, Counts: map[string]Counts{}, Problems: slices.Clone(plan.Problems)}
	bar := &progress{w: cfg.Progress, terminal: cfg.Terminal}
	if cfg.DryRun {
		for _, f := range files {
			result.Files = append(result.Files, f.Path)
		}
		for _, t := range plan.Tables {
			if t.MissingColumnSQL != "" {
				result.Files = append(result.Files, pendingPath(t, ".sql"))
			}
		}
		return result, writeReport(cfg, result)
	}

	target, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to Tenancy's database: %w", err)
	}
	defer target.Close(context.Background())
	rows := &rowWriter{conn: target, actor: cfg.Actor, keyTable: cfg.Mapping.APIKeys.Table, progress: bar.update}
	// Users first: a Membership of a verified user is Active at once.
	users, problems, notes, err := rows.users(ctx, plan.Users, cfg.Mapping.Source, cfg.Mapping.Users.Table)
	if err != nil {
		return nil, bar.fail(err)
	}
	result.Counts[kindUsers] = users
	result.Problems = append(result.Problems, problems...)
	result.Notes = append(result.Notes, notes...)
	if result.Counts[kindAudit], err = rows.auditRows(ctx, plan.AuditRows, cfg.Mapping.Source); err != nil {
		return nil, bar.fail(err)
	}
	if cfg.OutDir != "" {
		var c Counts
		for _, f := range files {
			content, err := f.render()
			if err != nil {
				return nil, err
			}
			wrote, err := writeFile(cfg.OutDir, f.Path, content)
			if err != nil {
				return nil, fmt.Errorf("writing %s: %w", filepath.Join(cfg.OutDir, f.Path), err)
			}
			countWrite(&c, wrote)
			result.Files = append(result.Files, f.Path)
		}
		for _, t := range plan.Tables {
			if t.MissingColumnSQL == "" {
				continue
			}
			path := pendingPath(t, ".sql")
			wrote, err := writeFile(cfg.OutDir, path, []byte(t.MissingColumnSQL))
			if err != nil {
				return nil, fmt.Errorf("writing %s: %w", filepath.Join(cfg.OutDir, path), err)
			}
			countWrite(&c, wrote)
			result.Files = append(result.Files, path)
		}
		result.Counts[kindFiles] = c
	}
	if cfg.Apply {
		a := &applier{c: cfg.Kube, ledger: target, source: cfg.Mapping.Source, progress: bar.update}
		var applicable []manifestFile
		for _, f := range files {
			if !strings.HasPrefix(f.Path, filepath.Join("tenanttables", "pending")) {
				applicable = append(applicable, f)
			}
		}
		applied, err := a.apply(ctx, applicable, cfg.Wait)
		result.Counts[kindObjects] = applied.Counts
		result.Problems = append(result.Problems, applied.Problems...)
		result.Notes = append(result.Notes, applied.Notes...)
		if err != nil {
			return nil, bar.fail(err)
		}
		_, problems, err := a.wait(ctx, applied.Objects, cfg.Wait)
		result.Problems = append(result.Problems, problems...)
		if err != nil {
			return nil, bar.fail(err)
		}
	}
	// The old keys last: each needs its APIKey, and that its organization's row.
	liveKeys := map[string]liveAPIKey{}
	if cfg.Kube != nil {
		if liveKeys, err = importedAPIKeys(ctx, cfg.Kube, cfg.Mapping.Source); err != nil {
			return nil, bar.fail(err)
		}
	}
	keyCounts, keyProblems, err := rows.oldKeys(ctx, plan, cfg.Mapping.Source, func(org *Organization, k APIKey) (liveAPIKey, bool) {
		live, ok := liveKeys[org.Name+"/"+k.Name]
		return live, ok && live.Project == k.Project
	})
	if err != nil {
		return nil, bar.fail(err)
	}
	result.Counts[kindOldKeys] = keyCounts
	result.Problems = append(result.Problems, keyProblems...)
	bar.done()
	return result, writeReport(cfg, result)
}

// readCluster reads the Organizations and namespaces that exist.
func readCluster(ctx context.Context, c client.Client) (*ClusterState, error) {
	state := &ClusterState{Namespaces: map[string]bool{}, Organizations: map[string]ImportedObject{}}
	// readCluster's answers hold at the moment it reads: what is created afterwards, before the
	// objects are (or, with GitOps, before they are applied), is not seen.
	var namespaces corev1.NamespaceList
	if err := c.List(ctx, &namespaces); err != nil {
		return nil, fmt.Errorf("listing the cluster's namespaces: %w", err)
	}
	for _, ns := range namespaces.Items {
		state.Namespaces[ns.Name] = true
	}
	orgs := &unstructured.UnstructuredList{}
	orgs.SetGroupVersionKind(tenancyv1.GroupVersion.WithKind("OrganizationList"))
	if err := c.List(ctx, orgs); err != nil {
		return nil, fmt.Errorf("listing the cluster's Organizations: %w", err)
	}
	for _, o := range orgs.Items {
		state.Organizations[o.GetName()] = ImportedObject{Source: o.GetLabels()[ManagedByLabel], RowID: o.GetAnnotations()[tenancyv1.RowIDAnnotation]}
	}
	tables := &unstructured.UnstructuredList{}
	tables.SetGroupVersionKind(tenancyv1.GroupVersion.WithKind("TenantTableList"))
	if err := c.List(ctx, tables); err != nil {
		return nil, fmt.Errorf("listing the cluster's TenantTables: %w", err)
	}
	state.TenantTables = map[string]string{}
	for _, t := range tables.Items {
		schema, _, _ := unstructured.NestedString(t.Object, "spec", "schema")
		table, _, _ := unstructured.NestedString(t.Object, "spec", "table")
		if schema == "" {
			schema = "public" // the CRD's default
		}
		state.TenantTables[t.GetName()] = schema + "." + table
	}
	return state, nil
}

// liveAPIKey is an APIKey the source imported, as the cluster has it now.
type liveAPIKey struct {
	UID, Role, Project string
	ExpiresAt          *time.Time
}

// importedAPIKeys answers the APIKeys the source imported, by namespace/name.
func importedAPIKeys(ctx context.Context, c client.Client, source string) (map[string]liveAPIKey, error) {
	keys := &unstructured.UnstructuredList{}
	keys.SetGroupVersionKind(tenancyv1.GroupVersion.WithKind("APIKeyList"))
	if err := c.List(ctx, keys, client.MatchingLabels{ManagedByLabel: source}); err != nil {
		return nil, fmt.Errorf("listing the imported APIKeys: %w", err)
	}
	live := map[string]liveAPIKey{}
	for _, k := range keys.Items {
		if k.GetDeletionTimestamp() != nil {
			continue // its keys are being revoked: an old key written now would outlive it
		}
		key := liveAPIKey{UID: string(k.GetUID())}
		key.Role, _, _ = unstructured.NestedString(k.Object, "spec", "role")
		key.Project, _, _ = unstructured.NestedString(k.Object, "spec", "project")
		if expires, _, _ := unstructured.NestedString(k.Object, "status", "expiresAt"); expires != "" {
			if at, err := time.Parse(time.RFC3339, expires); err == nil {
				key.ExpiresAt = &at
			}
		}
		live[k.GetNamespace()+"/"+k.GetName()] = key
	}
	return live, nil
}

func countWrite(c *Counts, w fileWrite) {
	switch w {
	case fileCreated:
		c.Created++
	case fileUpdated:
		c.Updated++
	default:
		c.Unchanged++
	}
}

// writeReport prints what the import did or, on a dry run, would do.
func writeReport(cfg Config, r *Result) error {
	var b strings.Builder
	w := &b
	p := r.Plan
	verb := "Imported"
	if cfg.DryRun {
		verb = "Would import (dry run: nothing was written)"
	}
	fmt.Fprintf(w, "%s from %s (schema %s):\n", verb, cfg.Mapping.Source, cfg.Mapping.Schema)
	projects, members, keys, oldKeys := 0, 0, 0, 0
	for _, o := range p.Organizations {
		projects += len(o.Projects)
		members += len(o.Memberships)
		keys += len(o.APIKeys)
		for _, k := range o.APIKeys {
			if k.OldKeyID != "" {
				oldKeys++
			}
		}
	}
	ready, pending := 0, 0
	for _, t := range p.Tables {
		switch {
		case t.MissingColumnSQL != "":
			pending++
		case t.OrganizationColumn != "":
			ready++
		}
	}
	fmt.Fprintf(w, "  %-26s %6d\n", "organizations", len(p.Organizations))
	fmt.Fprintf(w, "  %-26s %6d\n", "projects", projects)
	fmt.Fprintf(w, "  %-26s %6d\n", "users", len(p.Users))
	fmt.Fprintf(w, "  %-26s %6d\n", "memberships", members)
	fmt.Fprintf(w, "  %-26s %6d (%d old keys kept working until %s)\n", "API keys", keys, oldKeys, cfg.OldKeysUntil.UTC().Format(time.DateOnly))
	fmt.Fprintf(w, "  %-26s %6d\n", "audit rows", len(p.AuditRows))
	fmt.Fprintf(w, "  %-26s %6d (and %d that need the column first)\n", "TenantTables proposed", ready, pending)
	if len(r.Counts) > 0 {
		fmt.Fprintf(w, "\n  %-26s %8s %8s %10s %8s\n", "", "created", "updated", "unchanged", "waiting")
		for _, kind := range []string{kindUsers, kindAudit, kindFiles, kindObjects, kindOldKeys} {
			if c, ok := r.Counts[kind]; ok {
				fmt.Fprintf(w, "  %-26s %8d %8d %10d %8d\n", kind, c.Created, c.Updated, c.Unchanged, c.Waiting)
			}
		}
		if c := r.Counts[kindOldKeys]; c.Waiting > 0 {
			fmt.Fprintf(w, "  %d old API keys wait for their APIKey: once the manifests are applied and Ready, run the import again with a kubeconfig.\n", c.Waiting)
		}
	}
	if cfg.DryRun && len(r.Files) > 0 {
		fmt.Fprintf(w, "\nFiles it would write under %s:\n", displayDir(cfg.OutDir))
		for _, f := range r.Files {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if oldKeys > 0 {
		fmt.Fprintf(w, "\nAPI keys (the old key works with client_id <old key id> until the date; the new one is in the APIKey's Secret):\n")
		for _, o := range p.Organizations {
			for _, k := range o.APIKeys {
				if k.OldKeyID != "" {
					fmt.Fprintf(w, "  %s id=%s → APIKey %s/%s, old key id %s until %s\n", cfg.Mapping.APIKeys.Table, k.SourceID,
						o.Name, k.Name, k.OldKeyID, k.OldKeyExpires.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	var warnings []string
	for _, t := range p.Tables {
		switch {
		case t.MissingColumnSQL != "":
			warnings = append(warnings, fmt.Sprintf("%s: no %s; run %s with psql, then apply %s",
				t.Table, t.OrganizationColumn, pendingPath(t, ".sql"), pendingPath(t, ".yaml")))
		case t.OrganizationColumn != "":
			warnings = append(warnings, fmt.Sprintf("%s: TenantTable %s (organizationColumn %s)", t.Table, t.TenantTable, t.OrganizationColumn))
		}
		for _, msg := range t.Warnings {
			warnings = append(warnings, t.Table+": "+msg)
		}
	}
	if len(warnings) > 0 {
		fmt.Fprintf(w, "\nApplication tables:\n")
		for _, line := range warnings {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	if len(p.Skipped) > 0 {
		fmt.Fprintf(w, "\nLeft out on purpose:\n")
		for _, reason := range sortedKeys(p.Skipped) {
			fmt.Fprintf(w, "  %d %s\n", p.Skipped[reason], reason)
		}
	}
	if len(p.Notes) > 0 {
		fmt.Fprintf(w, "\nChanged to fit Tenancy:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\nLeft alone:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if cfg.Kube == nil {
		fmt.Fprintf(w, "\n--no-cluster: the import did not check for Organizations and namespaces of the same names (applying an\n"+
			"Organization for an existing namespace adopts it), and old API keys wait for their APIKeys.\n")
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "\nProblems (%d; these rows were not imported as they are, fix the source or the mapping and run again):\n", len(r.Problems))
		for _, pr := range r.Problems {
			fmt.Fprintf(w, "  %s\n", pr)
		}
	} else {
		fmt.Fprintf(w, "\nNo problems.\n")
	}
	if _, err := io.WriteString(cfg.Report, b.String()); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

func displayDir(dir string) string {
	if dir == "" {
		return "--out"
	}
	return dir
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
