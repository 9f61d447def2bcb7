package ociimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The files `make image` writes under its output directory (bin/images), per component:
//
//	<out>/<image>/                     an OCI image layout: oci-layout, index.json, blobs/sha256/…;
//	                                   index.json lists the image index, its ref.name the version
//	<out>/<image>-<version>.tar        a docker-archive of one platform's image (the build
//	                                   machine's, or --archive-platform), tagged
//	                                   <registry>/<image>:<version>, for docker load and kind
//	                                   load image-archive; hack/release publishes these

// LayoutDir is where c's OCI image layout goes under out.
func LayoutDir(out string, c Component) string { return filepath.Join(out, c.Image) }

// ArchivePath is where c's docker-archive of version goes under out, the name hack/release
// reads.
func ArchivePath(out string, c Component, version string) string {
	return filepath.Join(out, c.Image+"-"+version+".tar")
}

// Tag is c's reference in registry (a registry host and path, such as ghcr.io/tenancy-dev):
// <registry>/<image>:<version>. Both the registry and the version must be spelled out.
// name.Insecure among opts talks plain HTTP to the registry.
func Tag(registry string, c Component, version string, opts ...name.Option) (name.Tag, error) {
	return name.NewTag(registry+"/"+c.Image+":"+version, append([]name.Option{name.StrictValidation}, opts...)...)
}

// WriteLayout writes idx as the only image index of a new OCI image layout at dir, named by its
// version (org.opencontainers.image.ref.name), replacing what dir held. It writes next to dir
// and renames, so that an interrupted build leaves the previous layout or none.
func WriteLayout(dir string, idx v1.ImageIndex, version string) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout %s: %w", tmp, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefName: version})); err != nil {
		return fmt.Errorf("writing the image index into %s: %w", tmp, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// ReadLayout reads the image index named version from the OCI image layout at dir and validates
// it: every manifest, config and layer is read and checked against its digest, and every
// image's config against the platform the index gives it. A missing layout is an error that
// wraps fs.ErrNotExist, a layout without that version one that wraps ErrVersionMissing.
func ReadLayout(dir, version string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout %s: %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading %s/index.json: %w", dir, err)
	}
	manifest, err := top.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading %s/index.json: %w", dir, err)
	}
	var names []string
	for _, desc := range manifest.Manifests {
		names = append(names, desc.Annotations[RefName])
		if desc.Annotations[RefName] != version {
			continue
		}
		if desc.MediaType != types.OCIImageIndex {
			return nil, fmt.Errorf("%s: %s is a %s, want an image index (%s)", dir, version, desc.MediaType, types.OCIImageIndex)
		}
		idx, err := top.ImageIndex(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the image index %s: %w", dir, version, err)
		}
		if err := validate.Index(idx); err != nil {
			return nil, fmt.Errorf("%s: the image index %s is not valid: %w", dir, version, err)
		}
		return idx, nil
	}
	return nil, fmt.Errorf("%s holds no image index named %s (it holds %q): %w", dir, version, names, ErrVersionMissing)
}

// ErrVersionMissing is wrapped by ReadLayout's error when the layout holds other versions only.
var ErrVersionMissing = errors.New("the layout holds no image of that version")

// PlatformImage is the image of idx for platform.
func PlatformImage(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	manifest, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(manifest.Manifests, func(d v1.Descriptor) bool {
		return d.Platform != nil && d.Platform.Equals(platform)
	})
	if i < 0 {
		return nil, fmt.Errorf("the image index has no image for %s", platform)
	}
	return idx.Image(manifest.Manifests[i].Digest)
}

// WriteDockerArchive writes idx's image for platform as a docker-archive tagged tag, reads it
// back and validates it.
func WriteDockerArchive(path string, tag name.Tag, idx v1.ImageIndex, platform v1.Platform) error {
	img, err := PlatformImage(idx, platform)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return fmt.Errorf("writing the docker-archive %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	back, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		return fmt.Errorf("reading back the docker-archive %s: %w", path, err)
	}
	if err := validate.Image(back); err != nil {
		return fmt.Errorf("the docker-archive %s is not valid: %w", path, err)
	}
	want, err := img.ConfigName()
	if err != nil {
		return err
	}
	if got, err := back.ConfigName(); err != nil || got != want {
		return fmt.Errorf("the docker-archive %s holds the config %s, want %s (%v)", path, got, want, err)
	}
	return nil
}

// Push pushes the image index named tag's version from the layout at dir to tag, and returns its
// digest, which is the layout's: the registry stores the same bytes.
func Push(ctx context.Context, dir string, tag name.Tag, opts ...remote.Option) (v1.Hash, error) {
	idx, err := ReadLayout(dir, tag.TagStr())
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(tag, idx, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", tag, err)
	}
	return idx.Digest()
}
