package ociimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GoBuild compiles the components' commands for platform into dir (dir/<binary>), static and
// stamped with version: CGO_ENABLED=0 go build -trimpath -ldflags LDFlags(version), in repoRoot.
func GoBuild(ctx context.Context, repoRoot string, platform v1.Platform, version, dir string, components ...Component) error {
	args := []string{"build", "-trimpath", "-ldflags", LDFlags(version), "-o", dir + string(filepath.Separator)}
	for _, c := range components {
		args = append(args, c.Package())
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+platform.OS, "GOARCH="+platform.Architecture)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", platform, err, out)
	}
	return nil
}

// HostPlatform is the Linux platform of this machine's architecture: what docker load and kind
// here would run.
func HostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// BuildOptions says what Build builds and where it writes.
type BuildOptions struct {
	// RepoRoot is the module's root, where go build runs.
	RepoRoot string
	// Out is where the layouts and archives go (bin/images); see LayoutDir and ArchivePath.
	Out string
	// Registry is where the images will be pushed, such as ghcr.io/tenancy-dev: it names the
	// docker-archives' tags.
	Registry string
	Metadata Metadata
	// ArchivePlatform is the docker-archives' platform; the zero value means HostPlatform.
	ArchivePlatform v1.Platform
	// BinDir keeps the binaries (BinDir/<os>-<arch>/<binary>); empty means a temporary directory.
	BinDir string
	// Logf, when set, tells what Build is doing.
	Logf func(format string, args ...any)
}

// Built is what Build wrote for one component, as read back from disk.
type Built struct {
	Component Component
	Tag       name.Tag
	Layout    string
	Archive   string
	// Index is the image index read back from Layout and validated.
	Index v1.ImageIndex
}

// Build is `make image`: it compiles every component for every platform, builds their image
// indexes, writes each as an OCI layout and the ArchivePlatform image as a docker-archive, and
// reads everything back to validate it.
func Build(ctx context.Context, o BuildOptions) ([]Built, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.ArchivePlatform.OS == "" {
		o.ArchivePlatform = HostPlatform()
	}
	built := make([]Built, len(Components))
	for i, c := range Components {
		tag, err := Tag(o.Registry, c, o.Metadata.Version)
		if err != nil {
			return nil, fmt.Errorf("naming the %s image: %w", c.Binary, err)
		}
		built[i] = Built{Component: c, Tag: tag, Layout: LayoutDir(o.Out, c), Archive: ArchivePath(o.Out, c, o.Metadata.Version)}
	}
	binDir := o.BinDir
	if binDir == "" {
		tmp, err := os.MkdirTemp("", "tenancy-image-bin-")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		binDir = tmp
	}
	binaries := map[string]Binaries{}
	for _, platform := range Platforms {
		dir := filepath.Join(binDir, platform.OS+"-"+platform.Architecture)
		logf("Compiling %s for %s", o.Metadata.Version, platform)
		if err := GoBuild(ctx, o.RepoRoot, platform, o.Metadata.Version, dir, Components...); err != nil {
			return nil, err
		}
		for _, c := range Components {
			if binaries[c.Binary] == nil {
				binaries[c.Binary] = Binaries{}
			}
			binaries[c.Binary][platform.String()] = filepath.Join(dir, c.Binary)
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	for i := range built {
		b := &built[i]
		idx, err := Index(b.Component, o.Metadata, binaries[b.Component.Binary])
		if err != nil {
			return nil, err
		}
		logf("Writing %s", b.Layout)
		if err := WriteLayout(b.Layout, idx, o.Metadata.Version); err != nil {
			return nil, err
		}
		if b.Index, err = ReadLayout(b.Layout, o.Metadata.Version); err != nil {
			return nil, err
		}
		logf("Writing %s (%s)", b.Archive, o.ArchivePlatform)
		if err := WriteDockerArchive(b.Archive, b.Tag, b.Index, o.ArchivePlatform); err != nil {
			return nil, err
		}
	}
	return built, nil
}

// Size is an image's size in a registry: its manifest, config and compressed layers.
func Size(img v1.Image) (int64, error) {
	manifest, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	size := int64(len(raw)) + manifest.Config.Size
	for _, l := range manifest.Layers {
		size += l.Size
	}
	return size, nil
}
