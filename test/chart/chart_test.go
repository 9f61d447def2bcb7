// Package chart checks the Helm chart charts/tenancy with Helm's Go SDK: it lints; with default
// values it renders the same objects as config/default (and config/self-signed, config/monitoring
// for the matching values), so that config/ stays the one source of truth; non-default values take
// effect where they should and every object they render is accepted by a real API server (envtest,
// server-side apply, dry-run) without a warning; the schema refuses bad values, naming the field;
// and the release version is the same in VERSION, Chart.yaml and config/.
package chart_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// kubeVersion is the Kubernetes version the chart is rendered for: envtest's (the Makefile's
// K8S_VERSION), which the chart's kubeVersion constraint must admit.
const kubeVersion = "v1.37.2"

// releaseName is the release of the tests, as in `helm install tenancy charts/tenancy`.
const releaseName = "tenancy"

// defaultNamespace is the namespace config/ deploys to, and the chart in the comparisons.
const defaultNamespace = "tenancy-system"

// chartDir is the chart's directory.
func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "tenancy") }

// loadChart loads charts/tenancy as `helm install` does.
func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir())
	if err != nil {
		t.Fatalf("loading charts/tenancy: %v", err)
	}
	return ch
}

// renderValues merges values over the chart's defaults, validates them against the schema and
// renders the templates, as `helm install --dry-run` does; the result maps template file names
// to their output.
func renderValues(ch *chartv2.Chart, values map[string]any, namespace string) (map[string]string, error) {
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	if c := ch.Metadata.KubeVersion; c != "" && !chartutil.IsCompatibleRange(c, kv.String()) {
		return nil, fmt.Errorf("the chart's kubeVersion %q does not admit %s", c, kv)
	}
	options := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := commonutil.ToRenderValues(ch, values, options, caps)
	if err != nil {
		return nil, err
	}
	return engine.Engine{}.RenderWithContext(context.Background(), ch, top)
}

// rendered is what the chart renders for one set of values.
type rendered struct {
	// objects are the templates' objects, in file name order.
	objects []*unstructured.Unstructured
	// notes is NOTES.txt.
	notes string
}

// render renders the chart with values (nil for the defaults) into namespace and decodes the
// objects; it fails t on any error.
func render(t *testing.T, values map[string]any, namespace string) rendered {
	t.Helper()
	files, err := renderValues(loadChart(t), values, namespace)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	var r rendered
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Base(name) == "NOTES.txt" {
			r.notes = files[name]
			continue
		}
		objects, err := decode(files[name])
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, files[name])
		}
		r.objects = append(r.objects, objects...)
	}
	return r
}

// crdObjects are the CRDs in the chart's crds/, which Helm installs before the templates.
func crdObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	var objects []*unstructured.Unstructured
	for _, crd := range loadChart(t).CRDObjects() {
		decoded, err := decode(string(crd.File.Data))
		if err != nil {
			t.Fatalf("charts/tenancy/%s: %v", crd.Name, err)
		}
		objects = append(objects, decoded...)
	}
	if len(objects) == 0 {
		t.Fatal("charts/tenancy/crds holds no CRD (make manifests copies them there)")
	}
	return objects
}

// decode splits a YAML stream into objects, through JSON as test/deploy reads kustomize's
// output, so that numbers are int64 and float64 on both sides of a comparison.
func decode(manifest string) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objects []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue // an empty document, such as a template whose condition is false
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		objects = append(objects, obj)
	}
}

// build runs kustomize on config/<overlay> as `kubectl apply -k` would (as test/deploy does).
func build(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "config", overlay)
	options := krusty.MakeDefaultOptions()
	options.Reorder = krusty.ReorderOptionUnspecified
	resources, err := krusty.MakeKustomizer(options).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", overlay, err)
	}
	var objects []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		data, err := r.MarshalJSON()
		obj := &unstructured.Unstructured{}
		if err == nil {
			err = obj.UnmarshalJSON(data)
		}
		if err != nil {
			t.Fatalf("config/%s: %s: %v", overlay, r.CurId(), err)
		}
		objects = append(objects, obj)
	}
	if len(objects) == 0 {
		t.Fatalf("kustomize build config/%s: no objects", overlay)
	}
	return objects
}

// valuesFile reads a values file of testdata/.
func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	values, err := common.ReadValuesFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("reading testdata/%s: %v", name, err)
	}
	return values
}

// parseValues reads values written as YAML in a test.
func parseValues(t *testing.T, text string) map[string]any {
	t.Helper()
	values, err := common.ReadValues([]byte(text))
	if err != nil {
		t.Fatalf("values %q: %v", text, err)
	}
	return values
}

func nameOf(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// The third-party CRDs that the chart's objects use, from their projects' Go modules (as
// test/deploy installs them).
const (
	certManagerModule        = "github.com/cert-manager/cert-manager@v1.21.2"
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

// controlPlane is envtest with the chart's CRDs and the third-party ones; nil under -short.
var controlPlane *envtest.Environment

func TestMain(m *testing.M) {
	flag.Parse()
	if testenv.Short() {
		// The tests that need the API server skip themselves; the others render and read files.
		os.Exit(m.Run())
	}
	code, err := runWithControlPlane(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithControlPlane(m *testing.M) (int, error) {
	certManager, err := moduleDir(certManagerModule)
	if err != nil {
		return 0, err
	}
	prometheusOperator, err := moduleDir(prometheusOperatorModule)
	if err != nil {
		return 0, err
	}
	controlPlane, err = testenv.NewControlPlane()
	if err != nil {
		return 0, err
	}
	// The chart's copy of the CRDs, as `helm install` installs them.
	controlPlane.CRDDirectoryPaths = []string{filepath.Join(chartDir(), "crds")}
	controlPlane.CRDInstallOptions = envtest.CRDInstallOptions{Paths: []string{
		filepath.Join(certManager, "deploy", "crds", "cert-manager.io_certificates.yaml"),
		filepath.Join(certManager, "deploy", "crds", "cert-manager.io_issuers.yaml"),
		filepath.Join(prometheusOperator, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml"),
	}, ErrorIfPathMissing: true}
	if _, err := controlPlane.Start(); err != nil {
		return 0, fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = controlPlane.Stop() }()
	return m.Run(), nil
}

// needsControlPlane skips t under -short, where TestMain starts no control plane.
func needsControlPlane(t *testing.T) {
	t.Helper()
	testenv.SkipIfShort(t, "envtest and the third-party CRDs from the Go module cache")
}

// moduleDir downloads a module (once, into the module cache) and returns its directory.
func moduleDir(module string) (string, error) {
	tmp, err := os.MkdirTemp("", "tenancy-chart-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = tmp // outside this module, so that go.mod stays as it is
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); jsonErr != nil || info.Error != "" || err != nil {
		return "", fmt.Errorf("go mod download %s: %v %s %v", module, err, info.Error, jsonErr)
	}
	return info.Dir, nil
}
