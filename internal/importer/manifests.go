package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// ManagedByLabel marks what an import wrote, with the source's name as value.
const ManagedByLabel = "tenancy.dev/imported-from"

// manifestFile is one file of the output: its path under the output directory and its objects.
type manifestFile struct {
	Path    string
	Objects []*unstructured.Unstructured
}

// syncWaveAnnotation orders Argo CD's sync: the Organization (wave 0, with its namespace, which
// the operator creates) is healthy before the objects in its namespace (wave 1) are applied.
const syncWaveAnnotation = "argocd.argoproj.io/sync-wave"

// manifests lays the plan out for GitOps: one directory per organization whose files apply in
// name order (docs/gitops.md), and the TenantTables apart, since they are cluster-scoped and
// wait for the application's tables. There is no Namespace: the operator creates it with the
// Organization, and the import never has one adopted unless told.
func manifests(plan *Plan, source string) ([]manifestFile, error) {
	var files []manifestFile
	labels := map[string]string{ManagedByLabel: source}
	inNamespace := map[string]string{syncWaveAnnotation: "1"}
	for _, org := range plan.Organizations {
		dir := org.Name
		o := &tenancyv1.Organization{
			TypeMeta: metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "Organization"},
			ObjectMeta: metav1.ObjectMeta{Name: org.Name, Labels: labels,
				Annotations: map[string]string{tenancyv1.RowIDAnnotation: org.RowID, syncWaveAnnotation: "0"}},
			Spec: tenancyv1.OrganizationSpec{DisplayName: org.DisplayName, Tier: tenancyv1.Tier(org.Tier), Namespace: org.Name},
		}
		var projects, members, keys []runtime.Object
		for _, p := range org.Projects {
			projects = append(projects, &tenancyv1.Project{
				TypeMeta: metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "Project"},
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: org.Name, Labels: labels,
					Annotations: map[string]string{tenancyv1.RowIDAnnotation: p.RowID, syncWaveAnnotation: "1"}},
				Spec: tenancyv1.ProjectSpec{DisplayName: p.DisplayName},
			})
		}
		for _, m := range org.Memberships {
			members = append(members, &tenancyv1.Membership{
				TypeMeta:   metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "Membership"},
				ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: org.Name, Labels: labels, Annotations: inNamespace},
				Spec:       tenancyv1.MembershipSpec{User: m.Email, Role: tenancyv1.Role(m.Role), Project: m.Project},
			})
		}
		for _, k := range org.APIKeys {
			key := &tenancyv1.APIKey{
				TypeMeta: metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "APIKey"},
				ObjectMeta: metav1.ObjectMeta{Name: k.Name, Namespace: org.Name, Labels: labels,
					Annotations: map[string]string{syncWaveAnnotation: "1"}},
				Spec: tenancyv1.APIKeySpec{Role: tenancyv1.Role(k.Role), Project: k.Project},
			}
			if k.ExpiresAt != nil {
				key.Spec.ExpiresAt = &metav1.Time{Time: *k.ExpiresAt}
			}
			if k.OldKeyID != "" {
				key.Annotations[ImportedKeyAnnotation] = k.OldKeyID
			}
			keys = append(keys, key)
		}
		for _, f := range []struct {
			name    string
			objects []runtime.Object
		}{
			{"01-organization.yaml", []runtime.Object{o}},
			{"02-projects.yaml", projects},
			{"03-members.yaml", members},
			{"04-apikeys.yaml", keys},
		} {
			if len(f.objects) == 0 {
				continue
			}
			file, err := toFile(filepath.Join(dir, f.name), f.objects)
			if err != nil {
				return nil, err
			}
			files = append(files, file)
		}
	}
	var ready []runtime.Object
	for _, t := range plan.Tables {
		if t.OrganizationColumn == "" {
			continue
		}
		tt := &tenancyv1.TenantTable{
			TypeMeta:   metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "TenantTable"},
			ObjectMeta: metav1.ObjectMeta{Name: t.TenantTable, Labels: labels},
			Spec: tenancyv1.TenantTableSpec{Schema: plan.schema, Table: t.Table, OrganizationColumn: t.OrganizationColumn,
				ProjectColumn: t.ProjectColumn},
		}
		if t.MissingColumnSQL == "" {
			ready = append(ready, tt)
			continue
		}
		file, err := toFile(pendingPath(t, ".yaml"), []runtime.Object{tt})
		if err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	if len(ready) > 0 {
		file, err := toFile(filepath.Join("tenanttables", "tenanttables.yaml"), ready)
		if err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	return files, nil
}

// pendingPath is where the files of a table that needs its organization column first go, named
// after its TenantTable (a DNS name, whatever the table is called).
func pendingPath(t TableProposal, ext string) string {
	return filepath.Join("tenanttables", "pending", t.TenantTable+ext)
}

// ImportedKeyAnnotation on an APIKey names the client_id of the old key it replaces; the report
// lists the same pairs.
const ImportedKeyAnnotation = "tenancy.dev/imported-key-id"

// toFile turns typed objects into what gets applied: no status, no empty creationTimestamp.
func toFile(path string, objects []runtime.Object) (manifestFile, error) {
	f := manifestFile{Path: path}
	for _, obj := range objects {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return f, fmt.Errorf("%s: %w", path, err)
		}
		delete(content, "status")
		if meta, ok := content["metadata"].(map[string]any); ok {
			delete(meta, "creationTimestamp")
		}
		f.Objects = append(f.Objects, &unstructured.Unstructured{Object: content})
	}
	return f, nil
}

// write renders the file as YAML documents.
func (f manifestFile) render() ([]byte, error) {
	var b bytes.Buffer
	for i, obj := range f.Objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		out, err := yaml.Marshal(obj.Object)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		b.Write(out)
	}
	return b.Bytes(), nil
}

// fileWrite is what writeFile did.
type fileWrite int

const (
	fileUnchanged fileWrite = iota
	fileCreated
	fileUpdated
)

// writeFile writes content to dir/path when it differs from what is there.
func writeFile(dir, path string, content []byte) (fileWrite, error) {
	full := filepath.Join(dir, path)
	old, err := os.ReadFile(full)
	switch {
	case err == nil && bytes.Equal(old, content):
		return fileUnchanged, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fileUnchanged, err
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fileUnchanged, err
	}
	if err := os.WriteFile(full, content, 0o644); err != nil {
		return fileUnchanged, err
	}
	if old == nil {
		return fileCreated, nil
	}
	return fileUpdated, nil
}
