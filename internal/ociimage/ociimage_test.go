package ociimage_test

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tenancy-dev/tenancy/internal/ociimage"
)

var (
	manager = ociimage.Components[0]
	meta    = ociimage.Metadata{Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567"}
)

// fakeBinaries writes a small stand-in for each platform's binary: these tests check the image
// around it; test/image runs the real ones.
func fakeBinaries(t *testing.T, c ociimage.Component) ociimage.Binaries {
	t.Helper()
	binaries := ociimage.Binaries{}
	for _, p := range ociimage.Platforms {
		path := filepath.Join(t.TempDir(), c.Binary)
		if err := os.WriteFile(path, []byte("not really "+c.Binary+" for "+p.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		binaries[p.String()] = path
	}
	return binaries
}

func managerIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	idx, err := ociimage.Index(manager, meta, fakeBinaries(t, manager))
	if err != nil {
		t.Fatalf("building the manager's image index: %v", err)
	}
	return idx
}

func amd64Image(t *testing.T, idx v1.ImageIndex) v1.Image {
	t.Helper()
	img, err := ociimage.PlatformImage(idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// entry is one file of an image's flattened filesystem.
type entry struct {
	header *tar.Header
	data   []byte
}

func filesystem(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading the image's filesystem: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = entry{header: h, data: data}
	}
}

func TestImageConfig(t *testing.T) {
	img := amd64Image(t, managerIndex(t))
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":       "tenancy-manager",
		"org.opencontainers.image.description": manager.Description,
		"org.opencontainers.image.version":     "v1.2.3",
		"org.opencontainers.image.source":      "https://github.com/tenancy-dev/tenancy",
		"org.opencontainers.image.revision":    meta.Revision,
	}
	want := v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels:     wantLabels,
	}
	if diff := cmp.Diff(want, cfg.Config); diff != "" {
		t.Errorf("the manager image's config (-want +got):\n%s", diff)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !cfg.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config says %s/%s created %s, want linux/amd64 created at the Unix epoch", cfg.OS, cfg.Architecture, cfg.Created)
	}
	manifest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if manifest.MediaType != types.OCIManifestSchema1 || manifest.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s with config %s, want OCI media types", manifest.MediaType, manifest.Config.MediaType)
	}
	for i, l := range manifest.Layers {
		if l.MediaType != types.OCILayer {
			t.Errorf("layer %d is %s, want %s", i, l.MediaType, types.OCILayer)
		}
	}
	if len(manifest.Layers) != 2 {
		t.Errorf("%d layers, want 2: the base files and the binary", len(manifest.Layers))
	}
	if diff := cmp.Diff(wantLabels, manifest.Annotations); diff != "" {
		t.Errorf("the manifest's annotations (-want +got):\n%s", diff)
	}
}

func TestRevisionLabelOnlyWhenKnown(t *testing.T) {
	labels := ociimage.Labels(manager, ociimage.Metadata{Version: "v1.2.3"})
	if _, ok := labels[ociimage.LabelRevision]; ok {
		t.Errorf("labels %v carry a revision, but none was given", labels)
	}
}

func TestImageFiles(t *testing.T) {
	files := filesystem(t, amd64Image(t, managerIndex(t)))
	const root, nonroot = 0, 65532
	tests := []struct {
		path     string
		typ      byte
		mode     int64
		uid, gid int
		reason   string
	}{
		{"/etc", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/etc/passwd", tar.TypeReg, 0o644, root, root, "names root and nonroot"},
		{"/etc/group", tar.TypeReg, 0o644, root, root, "names root and nonroot"},
		{"/etc/ssl", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/etc/ssl/certs", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, root, root, "where Go looks for CAs"},
		{"/home", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/home/nonroot", tar.TypeDir, 0o700, nonroot, nonroot, "the user's home, theirs only"},
		{"/tmp", tar.TypeDir, 0o1777, root, root, "world-writable and sticky"},
		{"/usr", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/usr/share", tar.TypeDir, 0o755, root, root, "a directory of its own"},
		{"/usr/share/zoneinfo", tar.TypeDir, 0o755, root, root, "where Go looks for time zones"},
		{"/manager", tar.TypeReg, 0o755, root, root, "the entrypoint, executable by nonroot, writable by nobody else"},
	}
	listed := map[string]bool{}
	for _, tt := range tests {
		listed[tt.path] = true
		e, ok := files[tt.path]
		if !ok {
			t.Errorf("%s is missing (%s)", tt.path, tt.reason)
			continue
		}
		h := e.header
		if h.Typeflag != tt.typ || h.Mode != tt.mode || h.Uid != tt.uid || h.Gid != tt.gid {
			t.Errorf("%s: type %q mode %#o owner %d:%d, want type %q mode %#o owner %d:%d (%s)",
				tt.path, h.Typeflag, h.Mode, h.Uid, h.Gid, tt.typ, tt.mode, tt.uid, tt.gid, tt.reason)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %s, want the Unix epoch (reproducible builds)", tt.path, h.ModTime)
		}
	}

	// Nothing but the above and the time zones: no shell, no package manager, no other user.
	for path, e := range files {
		if strings.HasPrefix(path, "/usr/share/zoneinfo/") {
			continue
		}
		if !listed[path] {
			t.Errorf("%s (%s) is in the image, but only the files listed here belong there", path, e.header.FileInfo().Mode())
		}
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh", "/bin", "/usr/bin", "/sbin"} {
		if _, ok := files[shell]; ok {
			t.Errorf("%s is in the image: the images have no shell", shell)
		}
	}
	if got := string(files["/etc/passwd"].data); got != ociimage.Passwd {
		t.Errorf("/etc/passwd is %q, want %q", got, ociimage.Passwd)
	}
	if !strings.Contains(string(files["/etc/passwd"].data), "nonroot:x:65532:65532:") ||
		!strings.Contains(string(files["/etc/group"].data), "nonroot:x:65532:") {
		t.Errorf("/etc/passwd or /etc/group lacks nonroot 65532:\n%s\n%s", files["/etc/passwd"].data, files["/etc/group"].data)
	}
}

func TestEveryDirectoryHasItsOwnEntry(t *testing.T) {
	img := amd64Image(t, managerIndex(t))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		seen := map[string]bool{".": true}
		var names []string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(h.Name, "/")
			if parent := filepath.Dir(name); !seen[parent] {
				t.Errorf("layer %d: %s comes before (or without) an entry for its directory %s", i, h.Name, parent)
			}
			seen[name] = true
			names = append(names, h.Name)
		}
		rc.Close()
		if !slices.IsSorted(names) {
			t.Errorf("layer %d: entries are not in name order", i)
		}
	}
}

func TestCABundle(t *testing.T) {
	bundle := filesystem(t, amd64Image(t, managerIndex(t)))["/etc/ssl/certs/ca-certificates.crt"].data
	sources, err := filepath.Glob(filepath.Join(ociimage.CACertificatesDir, "*.crt"))
	if err != nil || len(sources) == 0 {
		t.Fatalf("no certificates in %s (%v): install Debian's ca-certificates", ociimage.CACertificatesDir, err)
	}
	count := 0
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Errorf("certificate %d of the bundle does not parse: %v", count, err)
		}
		count++
	}
	if count != len(sources) {
		t.Errorf("the bundle holds %d certificates, want one per file of %s (%d)", count, ociimage.CACertificatesDir, len(sources))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Error("the bundle gives Go no certificate")
	}
}

func TestZoneinfo(t *testing.T) {
	files := filesystem(t, amd64Image(t, managerIndex(t)))
	berlin, ok := files["/usr/share/zoneinfo/Europe/Berlin"]
	if !ok {
		t.Fatal("/usr/share/zoneinfo/Europe/Berlin is missing")
	}
	loc, err := time.LoadLocationFromTZData("Europe/Berlin", berlin.data)
	if err != nil {
		t.Fatalf("Europe/Berlin does not load: %v", err)
	}
	if _, offset := time.Date(2026, 7, 1, 12, 0, 0, 0, loc).Zone(); offset != 2*60*60 {
		t.Errorf("Europe/Berlin is %ds off UTC in July, want 7200 (CEST)", offset)
	}
	// Links between zones stay links; a link out of the tree (localtime -> /etc/localtime) has
	// nothing to point at in the image.
	if gb, ok := files["/usr/share/zoneinfo/GB"]; ok && gb.header.Typeflag == tar.TypeSymlink {
		if gb.header.Linkname != "Europe/London" {
			t.Errorf("GB links to %q, want Europe/London", gb.header.Linkname)
		}
	}
	for path, e := range files {
		if e.header.Typeflag == tar.TypeSymlink && strings.HasPrefix(e.header.Linkname, "/") {
			t.Errorf("%s links to %s, outside the time zones", path, e.header.Linkname)
		}
	}
}

func TestReproducible(t *testing.T) {
	binaries := fakeBinaries(t, manager)
	digest := func(m ociimage.Metadata) v1.Hash {
		t.Helper()
		idx, err := ociimage.Index(manager, m, binaries)
		if err != nil {
			t.Fatal(err)
		}
		h, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first, second := digest(meta), digest(meta)
	if first != second {
		t.Errorf("two builds of the same binaries: %s and %s, want the same digest", first, second)
	}
	other := meta
	other.Version = "v1.2.4"
	if digest(other) == first {
		t.Error("another version gives the same digest: the labels are not in the image")
	}
	later := meta
	later.Created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if digest(later) == first {
		t.Error("another SOURCE_DATE_EPOCH gives the same digest: mtimes are not set from it")
	}
}

func TestIndexHasBothPlatforms(t *testing.T) {
	idx := managerIndex(t)
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if manifest.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", manifest.MediaType, types.OCIImageIndex)
	}
	var platforms []string
	for _, desc := range manifest.Manifests {
		if desc.Platform == nil {
			t.Fatalf("manifest %s has no platform in the index", desc.Digest)
		}
		platforms = append(platforms, desc.Platform.String())
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Platform().String(); got != desc.Platform.String() {
			t.Errorf("the index says %s, the image's config %s", desc.Platform, got)
		}
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Errorf("platforms of the index (-want +got):\n%s", diff)
	}
	if manifest.Annotations[ociimage.LabelVersion] != "v1.2.3" || manifest.Annotations[ociimage.LabelSource] == "" {
		t.Errorf("index annotations %v, want the version and source", manifest.Annotations)
	}
}

func TestLayoutRoundTrip(t *testing.T) {
	idx := managerIndex(t)
	dir := filepath.Join(t.TempDir(), "tenancy-manager")
	if err := ociimage.WriteLayout(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	back, err := ociimage.ReadLayout(dir, "v1.2.3")
	if err != nil {
		t.Fatalf("reading back the layout: %v", err)
	}
	want, _ := idx.Digest()
	if got, _ := back.Digest(); got != want {
		t.Errorf("the layout holds %s, want the index written, %s", got, want)
	}
	// Writing again replaces the layout, leaving no blob of the first behind.
	if err := ociimage.WriteLayout(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s.tmp is left behind: %v", dir, err)
	}

	if _, err := ociimage.ReadLayout(dir, "v9.9.9"); err == nil || !strings.Contains(err.Error(), "v1.2.3") {
		t.Errorf("reading another version: %v, want an error that names the version the layout holds", err)
	}
	if _, err := ociimage.ReadLayout(filepath.Join(t.TempDir(), "nothing"), "v1.2.3"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading a missing layout: %v, want fs.ErrNotExist", err)
	}
}

func TestDockerArchive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tenancy-manager")
	if err := ociimage.WriteLayout(dir, managerIndex(t), "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	idx, err := ociimage.ReadLayout(dir, "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociimage.Tag("ghcr.io/tenancy-dev", manager, "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	path := ociimage.ArchivePath(t.TempDir(), manager, "v1.2.3")
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	if err := ociimage.WriteDockerArchive(path, tag, idx, arm64); err != nil {
		t.Fatal(err)
	}
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{"ghcr.io/tenancy-dev/tenancy-manager:v1.2.3"}) {
		t.Errorf("the archive's manifest.json: %+v, want one image tagged ghcr.io/tenancy-dev/tenancy-manager:v1.2.3", manifest)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" {
		t.Errorf("the archive holds the %s image, want arm64", cfg.Architecture)
	}
}

func TestTag(t *testing.T) {
	tests := []struct {
		registry, version, want string
		reason                  string
	}{
		{"ghcr.io/tenancy-dev", "v0.1.0", "ghcr.io/tenancy-dev/tenancy-manager:v0.1.0", "the default"},
		{"127.0.0.1:5000", "v0.1.0", "127.0.0.1:5000/tenancy-manager:v0.1.0", "a local registry with a port"},
		{"tenancy-dev", "v0.1.0", "", "no registry host: it would silently mean Docker Hub"},
		{"ghcr.io/Tenancy", "v0.1.0", "", "upper case is not a repository"},
		{"ghcr.io/tenancy-dev", "", "", "no version"},
		{"ghcr.io/tenancy-dev", "v0.1.0+build", "", "+ is not allowed in a tag"},
	}
	for _, tt := range tests {
		tag, err := ociimage.Tag(tt.registry, manager, tt.version)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("Tag(%q, %q) = %s, want an error (%s)", tt.registry, tt.version, tag, tt.reason)
		case tt.want != "" && err != nil:
			t.Errorf("Tag(%q, %q): %v (%s)", tt.registry, tt.version, err, tt.reason)
		case tt.want != "" && tag.String() != tt.want:
			t.Errorf("Tag(%q, %q) = %s, want %s (%s)", tt.registry, tt.version, tag, tt.want, tt.reason)
		}
	}
}

func TestMakefileStampsAsImagesDo(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	want := "GO_LDFLAGS := " + ociimage.LDFlags("$(VERSION)")
	if !slices.Contains(strings.Split(string(data), "\n"), want) {
		t.Errorf("the Makefile has no line %q: make build would stamp differently from the images", want)
	}
	if bytes.Contains(data, []byte("hack/image build")) && !bytes.Contains(data, []byte("--version $(VERSION)")) {
		t.Error("the Makefile calls hack/image build without --version $(VERSION)")
	}
}
