package version

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStampedVersionWins(t *testing.T) {
	defer func(old string) { Version = old }(Version)
	Version = "v9.8.7"
	info := Get()
	if info.Version != "v9.8.7" {
		t.Fatalf("Get().Version = %q, want the stamped v9.8.7", info.Version)
	}
	if !strings.HasPrefix(info.String(), "v9.8.7 (") || !strings.Contains(info.String(), info.GoVersion) {
		t.Errorf("String() = %q, want the version, then the revision and Go version in brackets", info.String())
	}
}

func TestUnstampedVersionIsNeverEmpty(t *testing.T) {
	defer func(old string) { Version = old }(Version)
	Version = ""
	if got := Get().Version; got == "" {
		t.Fatal("Get().Version is empty without a stamp; want the module version or devel")
	}
}

func TestBuildInfoMetric(t *testing.T) {
	defer func(old string) { Version = old }(Version)
	Version = "v1.2.3"
	registry := prometheus.NewRegistry()
	registry.MustRegister(Collector("manager"))
	want := `
# HELP tenancy_build_info Always 1; the labels tell which build of which binary runs.
# TYPE tenancy_build_info gauge
tenancy_build_info{binary="manager",goversion="` + Get().GoVersion + `",revision="` + Get().Revision + `",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(registry, strings.NewReader(want), "tenancy_build_info"); err != nil {
		t.Error(err)
	}
}
