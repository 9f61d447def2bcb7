package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

const (
	testVersion  = "v9.8.7-rc.1"
	testRegistry = "registry.example.com/platform"
)

// newRelease writes a release of testVersion into a new directory, from this repository, with
// image archives as `make image` names them.
func newRelease(t *testing.T) (options, []string) {
	t.Helper()
	o := options{version: testVersion, registry: testRegistry, images: t.TempDir(), out: t.TempDir(), repo: testenv.RepoRoot()}
	for _, name := range images {
		// The archives' contents are test/image's business; here they are only copied and summed.
		if err := os.WriteFile(filepath.Join(o.images, name+"-"+testVersion+".tar"), []byte("archive of "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := o.release()
	if err != nil {
		t.Fatalf("release() = %v", err)
	}
	return o, files
}

func TestReleaseWritesEveryPart(t *testing.T) {
	_, files := newRelease(t)
	want := []string{"install.yaml", "install-self-signed.yaml", "tenancy-9.8.7-rc.1.tgz",
		"images/tenancy-manager-" + testVersion + ".tar", "images/tenancy-authd-" + testVersion + ".tar", "SHA256SUMS"}
	if !slices.Equal(files, want) {
		t.Errorf("release wrote %v, want %v", files, want)
	}
}

func TestInstallFilesRunThisRelease(t *testing.T) {
	o, _ := newRelease(t)
	for _, v := range variants {
		objects := readObjects(t, filepath.Join(o.out, v.file))
		var kinds, imagesRun []string
		for _, obj := range objects {
			kinds = append(kinds, obj.GetKind())
			if obj.GetKind() != "Deployment" {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				imagesRun = append(imagesRun, c.(map[string]any)["image"].(string))
			}
		}
		slices.Sort(imagesRun)
		wantImages := []string{testRegistry + "/tenancy-authd:" + testVersion, testRegistry + "/tenancy-manager:" + testVersion}
		if !slices.Equal(imagesRun, wantImages) {
			t.Errorf("%s: the Deployments run %v, want %v", v.file, imagesRun, wantImages)
		}
		for _, kind := range []string{"CustomResourceDefinition", "Namespace", "ClusterRole", "Deployment", "Service",
			"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "NetworkPolicy"} {
			if !slices.Contains(kinds, kind) {
				t.Errorf("%s has no %s", v.file, kind)
			}
		}
		usesCertManager := slices.Contains(kinds, "Certificate")
		if want := v.file == "install.yaml"; usesCertManager != want {
			t.Errorf("%s: has a cert-manager Certificate: %t, want %t", v.file, usesCertManager, want)
		}
	}
}

func TestChartPackageCarriesTheVersionAndRegistry(t *testing.T) {
	o, _ := newRelease(t)
	chart, err := loader.Load(filepath.Join(o.out, "tenancy-9.8.7-rc.1.tgz"))
	if err != nil {
		t.Fatalf("the packaged chart does not load: %v", err)
	}
	if chart.Metadata.Version != "9.8.7-rc.1" || chart.Metadata.AppVersion != testVersion {
		t.Errorf("chart version %q, appVersion %q; want 9.8.7-rc.1 and %s", chart.Metadata.Version, chart.Metadata.AppVersion, testVersion)
	}
	bases, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("config/crd/bases: %v (%d files)", err, len(bases))
	}
	if got := len(chart.CRDObjects()); got != len(bases) {
		t.Errorf("the packaged chart holds %d CRDs, want the %d of config/crd/bases", got, len(bases))
	}
	var values string
	for _, f := range chart.Raw {
		if f.Name == "values.yaml" {
			values = string(f.Data)
		}
	}
	if strings.Contains(values, defaultRegistry+"/") || !strings.Contains(values, testRegistry+"/tenancy-manager") {
		t.Errorf("the packaged values.yaml does not point the images at %s:\n%s", testRegistry, values)
	}
}

func TestChecksumsMatch(t *testing.T) {
	o, files := newRelease(t)
	sums, err := os.Open(filepath.Join(o.out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	var summed []string
	lines := bufio.NewScanner(sums)
	for lines.Scan() {
		sum, name, ok := strings.Cut(lines.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: line %q is not `<sum>  <file>`", lines.Text())
		}
		data, err := os.ReadFile(filepath.Join(o.out, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("SHA256SUMS: %s does not match its sum", name)
		}
		summed = append(summed, name)
	}
	if want := files[:len(files)-1]; !slices.Equal(summed, want) {
		t.Errorf("SHA256SUMS covers %v, want %v", summed, want)
	}
}

// TestReleaseRefusesBadInput: each mistake names the flag and writes nothing.
func TestReleaseRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*options)
		want string
	}{
		{"version without v", func(o *options) { o.version = "1.2.3" }, "--version"},
		{"version that is no version", func(o *options) { o.version = "latest" }, "--version"},
		{"registry with a trailing slash", func(o *options) { o.registry = "ghcr.io/x/" }, "--registry"},
		{"images of another version", func(o *options) { o.version = "v1.0.0" }, "make image VERSION=v1.0.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := options{version: testVersion, registry: testRegistry, images: t.TempDir(), out: filepath.Join(t.TempDir(), "dist"), repo: testenv.RepoRoot()}
			for _, name := range images {
				if err := os.WriteFile(filepath.Join(o.images, name+"-"+testVersion+".tar"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c.edit(&o)
			_, err := o.release()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("release() = %v, want an error naming %s", err, c.want)
			}
			if _, statErr := os.Stat(o.out); statErr == nil {
				t.Errorf("release() failed but wrote %s", o.out)
			}
		})
	}
}

func readObjects(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objects []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(obj.Object) > 0 {
			objects = append(objects, obj)
		}
	}
	if len(objects) == 0 {
		t.Fatalf("%s holds no objects", file)
	}
	return objects
}
