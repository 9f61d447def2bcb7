package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestVersionIsTheSameEverywhere: the release version in the VERSION file is the chart's version,
// and with a v the chart's appVersion (the default image tag) and the images' tag in config/.
func TestVersionIsTheSameEverywhere(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(data))
	if version == "" || strings.HasPrefix(version, "v") {
		t.Fatalf("VERSION holds %q; want a version without v, such as 0.1.0", version)
	}
	tag := "v" + version

	ch := loadChart(t)
	if ch.Metadata.Version != version {
		t.Errorf("charts/tenancy/Chart.yaml: version %q, VERSION %q", ch.Metadata.Version, version)
	}
	if ch.Metadata.AppVersion != tag {
		t.Errorf("charts/tenancy/Chart.yaml: appVersion %q, want %q (VERSION with a v, the image tag)", ch.Metadata.AppVersion, tag)
	}
	for _, component := range []string{"manager", "authd"} {
		image, _ := ch.Values[component].(map[string]any)["image"].(map[string]any)
		if got := image["tag"]; got != "" && got != tag {
			t.Errorf("charts/tenancy/values.yaml: %s.image.tag %q; want it empty (the appVersion) or %q", component, got, tag)
		}
	}

	for _, tc := range []struct{ dir, image string }{
		{dir: "manager", image: "ghcr.io/tenancy-dev/tenancy-manager"},
		{dir: "authd", image: "ghcr.io/tenancy-dev/tenancy-authd"},
	} {
		file := filepath.Join("config", tc.dir, "kustomization.yaml")
		data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), file))
		if err != nil {
			t.Fatal(err)
		}
		var kustomization struct {
			Images []struct {
				Name   string `json:"name"`
				NewTag string `json:"newTag"`
			} `json:"images"`
		}
		if err := yaml.Unmarshal(data, &kustomization); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		found := false
		for _, image := range kustomization.Images {
			if image.Name != tc.image {
				continue
			}
			found = true
			if image.NewTag != tag {
				t.Errorf("%s: the image %s has newTag %q, want %q (VERSION)", file, tc.image, image.NewTag, tag)
			}
		}
		if !found {
			t.Errorf("%s: no images entry for %s", file, tc.image)
		}
	}
}
