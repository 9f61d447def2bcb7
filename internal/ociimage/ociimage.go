package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tenancy-dev/tenancy/internal/version"
)

// Component is one binary of the repository and the image that carries it.
type Component struct {
	// Binary names the command: the package ./cmd/<Binary>, the file /<Binary> in the image and
	// the Dockerfile's target.
	Binary string
	// Image is the repository name under the registry, such as tenancy-manager.
	Image string
	// Description is the image's org.opencontainers.image.description.
	Description string
}

// Package is the Go package that builds the binary.
func (c Component) Package() string { return "./cmd/" + c.Binary }

// Entrypoint is the image's entrypoint: the binary, with no shell around it.
func (c Component) Entrypoint() []string { return []string{"/" + c.Binary} }

// Components are the images the repository ships.
var Components = []Component{
	{Binary: "manager", Image: "tenancy-manager",
		Description: "Tenancy's manager: the controllers and admission webhooks of the Tenancy operator."},
	{Binary: "authd", Image: "tenancy-authd",
		Description: "Tenancy's auth service: logins, sessions, API-key tokens, invitations and the JWKS."},
}

// Platforms are the platforms every image is built for, in the order of the image index.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

const (
	// User is the image's user and group: nonroot, as the Deployments' runAsUser and runAsGroup.
	User = "65532:65532"
	// SourceURL is the repository the images are built from (org.opencontainers.image.source).
	SourceURL = "https://github.com/tenancy-dev/tenancy"
)

// Env is the image's environment: the PATH that Docker gives an image built FROM scratch, so that
// both builds say the same. The binaries need nothing else: Go finds the CA bundle at
// /etc/ssl/certs/ca-certificates.crt and the time zones in /usr/share/zoneinfo by default.
var Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// LDFlags are the linker flags of a release build: no symbol table or DWARF, and the version
// stamped into internal/version, as the Makefile's GO_LDFLAGS and the Dockerfile pass them.
func LDFlags(v string) string {
	return "-s -w " + version.LinkerFlag(v)
}

// The OCI label and annotation keys the images carry.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelSource      = "org.opencontainers.image.source"
	LabelRevision    = "org.opencontainers.image.revision"
	// RefName names an image index in an OCI layout's index.json: the version, as a tag.
	RefName = "org.opencontainers.image.ref.name"
)

// Metadata is what a build says about itself in labels and timestamps.
type Metadata struct {
	// Version is the release, such as v0.1.0: the label, the binaries' stamp and the tag.
	Version string
	// Revision is the git commit, when known; without it the label is left out.
	Revision string
	// Created is every file's mtime and the config's creation time. The zero value means the
	// Unix epoch, so that builds of the same binaries agree to the byte.
	Created time.Time
}

func (m Metadata) created() time.Time {
	if m.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return m.Created.UTC().Truncate(time.Second)
}

// Labels are the image config's labels, which are also the manifests' and the index's
// annotations. The repository has no licence file, so there is no licenses label.
func Labels(c Component, m Metadata) map[string]string {
	labels := map[string]string{
		LabelTitle:       c.Image,
		LabelDescription: c.Description,
		LabelVersion:     m.Version,
		LabelSource:      SourceURL,
	}
	if m.Revision != "" {
		labels[LabelRevision] = m.Revision
	}
	return labels
}

// Image is c's image for one platform, with the binary at binaryPath (built for that platform).
func Image(c Component, m Metadata, platform v1.Platform, binaryPath string) (v1.Image, error) {
	base, err := baseLayer(m)
	if err != nil {
		return nil, err
	}
	return image(c, m, platform, base, binaryPath)
}

// baseLayer is the layer every image starts with; it is the same for every component and
// platform, so registries and layouts store it once.
func baseLayer(m Metadata) (v1.Layer, error) {
	files, err := baseFiles()
	if err != nil {
		return nil, err
	}
	base, err := layer(files, m.created())
	if err != nil {
		return nil, fmt.Errorf("making the base layer: %w", err)
	}
	return base, nil
}

func image(c Component, m Metadata, platform v1.Platform, base v1.Layer, binaryPath string) (v1.Image, error) {
	binary, err := os.ReadFile(binaryPath)
	if err != nil {
		return nil, fmt.Errorf("reading the %s binary for %s: %w", c.Binary, platform, err)
	}
	app, err := layer(appFiles(c, binary), m.created())
	if err != nil {
		return nil, fmt.Errorf("making the %s layer: %w", c.Binary, err)
	}
	labels := Labels(c, m)
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		Created:      v1.Time{Time: m.created()},
		Config: v1.Config{
			User:       User,
			Entrypoint: c.Entrypoint(),
			WorkingDir: "/",
			Env:        Env,
			Labels:     labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: m.created()}, CreatedBy: "ociimage: base files (passwd, group, CA certificates, time zones)",
		}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: m.created()}, CreatedBy: "ociimage: /" + c.Binary,
		}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// Binaries maps each platform (its String, such as linux/amd64) to the path of the binary built
// for it.
type Binaries map[string]string

// Index is c's multi-platform image index: one image per platform of Platforms, each with its
// platform in the index, annotated as the images are.
func Index(c Component, m Metadata, binaries Binaries) (v1.ImageIndex, error) {
	base, err := baseLayer(m)
	if err != nil {
		return nil, err
	}
	var adds []mutate.IndexAddendum
	for _, platform := range Platforms {
		path, ok := binaries[platform.String()]
		if !ok {
			return nil, fmt.Errorf("no %s binary for %s", c.Binary, platform)
		}
		img, err := image(c, m, platform, base, path)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, maps.Clone(Labels(c, m))).(v1.ImageIndex), nil
}

// layer is an OCI layer (gzip) of files, in their order, with every mtime set to created. Its
// bytes are kept in memory: compressing once is what makes writing a layout and a tarball cheap.
func layer(files []file, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, Uname: userName(f.uid), Gname: userName(f.gid),
			ModTime: created, Format: tar.FormatPAX,
		}
		switch {
		case f.dir:
			h.Typeflag = tar.TypeDir
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

func userName(id int) string {
	if id == nonrootID {
		return "nonroot"
	}
	return "root"
}
