package version

import (
	"errors"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the release version, such as v0.1.0. The Makefile sets it from the VERSION file
// (`-ldflags -X github.com/tenancy-dev/tenancy/internal/version.Version=v…`); a plain `go build`
// leaves it empty and Get falls back to what the Go toolchain recorded.
var Version string

// Info is what a binary tells about its own build.
type Info struct {
	Version   string
	Revision  string // the git commit, when the build recorded one
	GoVersion string
}

// Get answers the stamped version, else the module version `go install …@vX` records, else
// "devel".
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	build, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	for _, s := range build.Settings {
		if s.Key == "vcs.revision" {
			info.Revision = s.Value
		}
	}
	if info.Version == "" {
		info.Version = build.Main.Version
	}
	if info.Version == "" || info.Version == "(devel)" {
		info.Version = "devel"
	}
	return info
}

// String is the line --version prints: "<binary> <version> (<revision>, <go version>)".
func (i Info) String() string {
	revision := i.Revision
	if revision == "" {
		revision = "unknown revision"
	}
	return i.Version + " (" + revision + ", " + i.GoVersion + ")"
}

// Collector is the gauge tenancy_build_info{binary,version,revision,goversion} = 1, the usual way
// to show in Prometheus which build runs where.
func Collector(binary string) prometheus.Collector {
	info := Get()
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenancy_build_info",
		Help: "Always 1; the labels tell which build of which binary runs.",
		ConstLabels: prometheus.Labels{
			"binary": binary, "version": info.Version, "revision": info.Revision, "goversion": info.GoVersion,
		},
	})
	gauge.Set(1)
	return gauge
}

// ErrRequested is what a binary's flag parsing answers for --version: print Get() and exit 0,
// before checking the flags that running needs.
var ErrRequested = errors.New("--version requested")

// LinkerFlag is the -ldflags argument that stamps v into a binary, for the Go programs that build
// the binaries (the Makefile spells out the same).
func LinkerFlag(v string) string {
	return "-X github.com/tenancy-dev/tenancy/internal/version.Version=" + v
}
