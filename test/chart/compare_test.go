package chart_test

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestChartRendersConfig: config/ is the one source of truth. With default values the chart (its
// CRDs and templates) renders the objects of config/default, object by object; with
// webhookCertificates.mode selfSigned those of config/self-signed, and with serviceMonitor.enabled
// those of config/monitoring. Only the differences that normalizeConfig and normalizeChart name
// are ignored.
func TestChartRendersConfig(t *testing.T) {
	for _, tc := range []struct {
		overlay string
		values  string
	}{
		{overlay: "default", values: ""},
		{overlay: "self-signed", values: "webhookCertificates: {mode: selfSigned}"},
		{overlay: "monitoring", values: "serviceMonitor: {enabled: true}"},
	} {
		t.Run(tc.overlay, func(t *testing.T) {
			fromConfig := normalizeConfig(t, build(t, tc.overlay))
			fromChart := normalizeChart(t, append(crdObjects(t), render(t, parseValues(t, tc.values), defaultNamespace).objects...))
			want := index(t, "config/"+tc.overlay, fromConfig)
			got := index(t, "the chart", fromChart)
			for _, key := range slices.Sorted(maps.Keys(want)) {
				if _, ok := got[key]; !ok {
					t.Errorf("%s: config/%s has it, the chart (values %q) does not render it", key, tc.overlay, tc.values)
				}
			}
			for _, key := range slices.Sorted(maps.Keys(got)) {
				w, ok := want[key]
				if !ok {
					t.Errorf("%s: the chart (values %q) renders it, config/%s does not have it", key, tc.values, tc.overlay)
					continue
				}
				if diff := cmp.Diff(yamlLines(t, w), yamlLines(t, got[key])); diff != "" {
					t.Errorf("%s differs (-config/%s +chart with values %q):\n%s", key, tc.overlay, tc.values, diff)
				}
			}
		})
	}
}

// index keys objects by kind and name; a key twice fails t.
func index(t *testing.T, source string, objects []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	byKey := map[string]*unstructured.Unstructured{}
	for _, obj := range objects {
		key := obj.GetKind() + " " + obj.GetName()
		if _, ok := byKey[key]; ok {
			t.Fatalf("%s: %s twice", source, key)
		}
		byKey[key] = obj
	}
	return byKey
}

// yamlLines writes obj as YAML with sorted keys, a line per element, so that a diff reads as a
// diff of manifests.
func yamlLines(t *testing.T, obj *unstructured.Unstructured) []string {
	t.Helper()
	data, err := yaml.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// generatedSettings matches the name that config/default's configMapGenerator gives the settings:
// tenancy-settings and a hash of the data.
var generatedSettings = regexp.MustCompile(`^(tenancy-settings)-[a-z0-9]{10}$`)

// normalizeConfig returns copies of config/'s objects without what the chart renders differently
// by design:
//   - the Namespace: Helm installs into a namespace the user created beforehand (with the database
//     Secrets), and a chart that rendered its own release namespace would delete it, Secrets and
//     all, on uninstall; NOTES.txt and the README tell users to label it as config/manager does;
//   - the hash in the settings ConfigMap's name (tenancy-settings-<hash>), in the ConfigMap and in
//     the references to it: the chart names it tenancy-settings and rolls the pods with a checksum
//     annotation instead (normalizeChart).
func normalizeConfig(t *testing.T, objects []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	renamed := map[string]string{}
	var kept []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GetKind() == "Namespace" {
			continue
		}
		obj = obj.DeepCopy()
		if m := generatedSettings.FindStringSubmatch(obj.GetName()); obj.GetKind() == "ConfigMap" && m != nil {
			renamed[obj.GetName()] = m[1]
			obj.SetName(m[1])
		}
		kept = append(kept, obj)
	}
	if len(renamed) != 1 {
		t.Fatalf("config/: want one generated settings ConfigMap, found %v", renamed)
	}
	for _, obj := range kept {
		if obj.GetKind() != "Deployment" {
			continue
		}
		forEachContainer(t, obj, func(container map[string]any) {
			env, _, _ := unstructured.NestedSlice(container, "env")
			for _, e := range env {
				ref, ok, _ := unstructured.NestedMap(e.(map[string]any), "valueFrom", "configMapKeyRef")
				if ok && renamed[ref["name"].(string)] != "" {
					ref["name"] = renamed[ref["name"].(string)]
					_ = unstructured.SetNestedMap(e.(map[string]any), ref, "valueFrom", "configMapKeyRef")
				}
			}
			_ = unstructured.SetNestedSlice(container, env, "env")
		})
	}
	return kept
}

// helmLabels are the labels Helm's conventions put on every object the chart renders.
var helmLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// checksumAnnotation is the pod template annotation with the settings' checksum.
const checksumAnnotation = "checksum/settings"

// normalizeChart returns copies of the chart's objects without Helm's labels (helmLabels) and
// without the pod templates' checksum of the settings, which config/ has no need of (its
// ConfigMap's name changes with the data instead). It fails t if the chart renders a Namespace.
func normalizeChart(t *testing.T, objects []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	var normalized []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GetKind() == "Namespace" {
			t.Errorf("the chart renders the Namespace %s; it must install into the release namespace the user created", obj.GetName())
		}
		obj = obj.DeepCopy()
		labels := obj.GetLabels()
		for _, l := range helmLabels {
			delete(labels, l)
		}
		if len(labels) == 0 {
			unstructured.RemoveNestedField(obj.Object, "metadata", "labels")
		} else {
			obj.SetLabels(labels)
		}
		if obj.GetKind() == "Deployment" {
			annotations, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "metadata", "annotations")
			delete(annotations, checksumAnnotation)
			if len(annotations) == 0 {
				unstructured.RemoveNestedField(obj.Object, "spec", "template", "metadata", "annotations")
			} else if err := unstructured.SetNestedStringMap(obj.Object, annotations, "spec", "template", "metadata", "annotations"); err != nil {
				t.Fatal(err)
			}
		}
		normalized = append(normalized, obj)
	}
	return normalized
}

// forEachContainer calls f with each container of a Deployment's pod template, which f may change.
func forEachContainer(t *testing.T, deployment *unstructured.Unstructured, f func(container map[string]any)) {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	if err != nil {
		t.Fatalf("Deployment %s: %v", deployment.GetName(), err)
	}
	for _, c := range containers {
		f(c.(map[string]any))
	}
	if err := unstructured.SetNestedSlice(deployment.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
}
