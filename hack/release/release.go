package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// defaultRegistry is where config/ and the chart's values point the images.
const defaultRegistry = "ghcr.io/tenancy-dev"

// images are the release's image names, as `make image` names them.
var images = []string{"tenancy-manager", "tenancy-authd"}

// variants are the one-file installs: the file name and the kustomize overlay it is built from.
var variants = []struct{ file, overlay, use string }{
	{"install.yaml", "config/default", "for clusters with cert-manager"},
	{"install-self-signed.yaml", "config/self-signed", "for clusters without cert-manager: the manager makes the webhook certificate"},
}

type options struct {
	version, registry, images, out, repo string
}

// semver is a release version as the images are tagged: v, then SemVer 2.
var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// release writes the release into o.out and answers the files written, relative to it.
func (o options) release() ([]string, error) {
	if !semver.MatchString(o.version) {
		return nil, fmt.Errorf("--version: %q is not a release version such as v0.1.0", o.version)
	}
	if o.registry == "" || strings.Contains(o.registry, ":") && !strings.Contains(o.registry, "/") || strings.HasSuffix(o.registry, "/") {
		return nil, fmt.Errorf("--registry: %q is not a registry path such as ghcr.io/tenancy-dev", o.registry)
	}
	archives, err := o.imageArchives()
	if err != nil {
		return nil, err
	}
	if err := o.clean(); err != nil {
		return nil, err
	}
	var files []string
	for _, v := range variants {
		if err := o.writeInstall(v.file, v.overlay, v.use); err != nil {
			return nil, err
		}
		files = append(files, v.file)
	}
	chartFile, err := o.packageChart()
	if err != nil {
		return nil, err
	}
	files = append(files, chartFile)
	for _, archive := range archives {
		name := path.Join("images", filepath.Base(archive))
		if err := copyFile(archive, filepath.Join(o.out, name)); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	if err := o.writeChecksums(files); err != nil {
		return nil, err
	}
	return append(files, "SHA256SUMS"), nil
}

// imageArchives finds the docker-archive tarballs of this version that `make image` wrote.
func (o options) imageArchives() ([]string, error) {
	var archives []string
	for _, name := range images {
		archive := filepath.Join(o.images, name+"-"+o.version+".tar")
		if _, err := os.Stat(archive); err != nil {
			return nil, fmt.Errorf("--images: no %s (run `make image VERSION=%s` first): %w", archive, o.version, err)
		}
		archives = append(archives, archive)
	}
	return archives, nil
}

// clean removes what an earlier release wrote into o.out, and nothing else.
func (o options) clean() error {
	if err := os.MkdirAll(filepath.Join(o.out, "images"), 0o755); err != nil {
		return err
	}
	stale, err := filepath.Glob(filepath.Join(o.out, "tenancy-*.tgz"))
	if err != nil {
		return err
	}
	oldImages, _ := filepath.Glob(filepath.Join(o.out, "images", "tenancy-*.tar"))
	stale = append(stale, oldImages...)
	stale = append(stale, filepath.Join(o.out, "SHA256SUMS"))
	for _, v := range variants {
		stale = append(stale, filepath.Join(o.out, v.file))
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeInstall builds an overlay as `kubectl apply -k` would, points its images at this release
// and writes it as one multi-document file.
func (o options) writeInstall(file, overlay, use string) error {
	kustomizer := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := kustomizer.Run(filesys.MakeFsOnDisk(), filepath.Join(o.repo, overlay))
	if err != nil {
		return fmt.Errorf("kustomize build %s: %w", overlay, err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Tenancy %s, %s.\n# kubectl apply --server-side -f %s  (docs/deployment.md)\n", o.version, use, file)
	replaced := 0
	for _, r := range resources.Resources() {
		node := r.MustYaml()
		rnode, err := yaml.Parse(node)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", overlay, r.CurId(), err)
		}
		n, err := o.pointImages(rnode)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", overlay, r.CurId(), err)
		}
		replaced += n
		out.WriteString("---\n")
		out.WriteString(rnode.MustString())
	}
	if replaced != len(images) {
		return fmt.Errorf("%s: found %d containers running the release images, want %d (one per image)", overlay, replaced, len(images))
	}
	return os.WriteFile(filepath.Join(o.out, file), out.Bytes(), 0o644)
}

// pointImages sets every container image of a Deployment that is one of the release's images to
// <registry>/<name>:<version>, and answers how many it set.
func (o options) pointImages(node *yaml.RNode) (int, error) {
	if node.GetKind() != "Deployment" {
		return 0, nil
	}
	containers, err := node.Pipe(yaml.Lookup("spec", "template", "spec", "containers"))
	if err != nil || containers == nil {
		return 0, err
	}
	set := 0
	elements, err := containers.Elements()
	if err != nil {
		return 0, err
	}
	for _, c := range elements {
		image := yaml.GetValue(c.Field("image").Value)
		name := path.Base(strings.SplitN(image, ":", 2)[0])
		if !slices.Contains(images, name) {
			continue
		}
		if err := c.PipeE(yaml.SetField("image", yaml.NewStringRNode(o.registry+"/"+name+":"+o.version))); err != nil {
			return 0, err
		}
		set++
	}
	return set, nil
}

// packageChart writes charts/tenancy as tenancy-<version>.tgz, with this version as the chart's
// version and appVersion and this registry in its default image repositories.
func (o options) packageChart() (string, error) {
	chart, err := loader.Load(filepath.Join(o.repo, "charts", "tenancy"))
	if err != nil {
		return "", fmt.Errorf("loading charts/tenancy: %w", err)
	}
	if len(chart.CRDObjects()) == 0 {
		return "", errors.New("charts/tenancy has no CRDs in crds/ (run `make manifests`)")
	}
	chart.Metadata.Version = strings.TrimPrefix(o.version, "v")
	chart.Metadata.AppVersion = o.version
	for _, f := range chart.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		if !bytes.Contains(f.Data, []byte(defaultRegistry+"/")) {
			return "", fmt.Errorf("charts/tenancy/values.yaml names no image under %s/", defaultRegistry)
		}
		f.Data = bytes.ReplaceAll(f.Data, []byte(defaultRegistry+"/"), []byte(o.registry+"/"))
	}
	file, err := chartutil.Save(chart, o.out)
	if err != nil {
		return "", fmt.Errorf("packaging charts/tenancy: %w", err)
	}
	return filepath.Base(file), nil
}

// writeChecksums writes SHA256SUMS in the format `sha256sum --check` reads.
func (o options) writeChecksums(files []string) error {
	var sums bytes.Buffer
	for _, name := range files {
		f, err := os.Open(filepath.Join(o.out, name))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		_ = f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), name)
	}
	return os.WriteFile(filepath.Join(o.out, "SHA256SUMS"), sums.Bytes(), 0o644)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
