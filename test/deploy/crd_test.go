package deploy_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestCRDsExplainEveryField: `kubectl explain` shows a field's description, which controller-gen
// takes from the Go doc comment; a field without one explains nothing.
func TestCRDsExplainEveryField(t *testing.T) {
	for _, crd := range readCRDs(t) {
		for _, version := range crd.Spec.Versions {
			if version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
				t.Errorf("%s %s: no schema", crd.Name, version.Name)
				continue
			}
			for _, path := range undescribed("", *version.Schema.OpenAPIV3Schema) {
				// The API server publishes ObjectMeta's own documented schema for metadata.
				if path == "metadata" {
					continue
				}
				t.Errorf("%s %s: %s has no description (add a doc comment to the Go field, then `make manifests`)",
					crd.Spec.Names.Kind, version.Name, path)
			}
		}
	}
}

// TestCRDsForKubectl: every kind answers to a short name and to `kubectl get tenancy`, and shows
// whether it is Ready and how old it is.
func TestCRDsForKubectl(t *testing.T) {
	for _, crd := range readCRDs(t) {
		kind := crd.Spec.Names.Kind
		if len(crd.Spec.Names.ShortNames) == 0 {
			t.Errorf("%s: no short name", kind)
		}
		if !slices.Contains(crd.Spec.Names.Categories, "tenancy") {
			t.Errorf("%s: not in the category tenancy (categories %v)", kind, crd.Spec.Names.Categories)
		}
		for _, version := range crd.Spec.Versions {
			var columns []string
			for _, c := range version.AdditionalPrinterColumns {
				columns = append(columns, c.Name)
			}
			for _, want := range []string{"Ready", "Age"} {
				if !slices.Contains(columns, want) {
					t.Errorf("%s %s: no %s column (columns %v)", kind, version.Name, want, columns)
				}
			}
		}
	}
}

// TestCRDRefusesReservedSchemas: the API server itself, with no webhook installed, refuses a
// TenantTable whose table would be in the operator's own schema or in PostgreSQL's.
func TestCRDRefusesReservedSchemas(t *testing.T) {
	needsControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tenantTable := func(schema string) *tenancyv1.TenantTable {
		return &tenancyv1.TenantTable{
			ObjectMeta: metav1.ObjectMeta{Name: "users-" + strings.ReplaceAll(schema, "_", "-")},
			Spec:       tenancyv1.TenantTableSpec{Schema: schema, Table: "users", OrganizationColumn: "id"},
		}
	}
	if err := admin.Create(ctx, tenantTable("public"), client.DryRunAll); err != nil {
		t.Fatalf("schema public: %v", err)
	}
	for _, schema := range []string{"tenancy", "pg_catalog", "information_schema", "pg_toast", "pg_temp_3", "pg_toast_temp_3"} {
		err := admin.Create(ctx, tenantTable(schema), client.DryRunAll)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.schema may not be tenancy (the operator's own schema)") {
			t.Errorf("schema %s: got %v, want Invalid: spec.schema may not be tenancy (the operator's own schema), …", schema, err)
		}
	}
}

func readCRDs(t *testing.T) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	var crds []apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		crds = append(crds, crd)
	}
	return crds
}

// undescribed returns the paths of the properties under schema that have no description.
func undescribed(path string, schema apiextensionsv1.JSONSchemaProps) []string {
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(schema.Properties)) {
		prop := schema.Properties[name]
		p := name
		if path != "" {
			p = path + "." + name
		}
		if prop.Description == "" {
			missing = append(missing, p)
		}
		missing = append(missing, undescribed(p, prop)...)
	}
	if schema.Items != nil && schema.Items.Schema != nil {
		missing = append(missing, undescribed(path+"[]", *schema.Items.Schema)...)
	}
	if schema.AdditionalProperties != nil && schema.AdditionalProperties.Schema != nil {
		missing = append(missing, undescribed(path+"{}", *schema.AdditionalProperties.Schema)...)
	}
	return missing
}
