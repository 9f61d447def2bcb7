package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tenancy-dev/tenancy/internal/ociimage"
)

const usage = `usage: image build|push --version v0.1.0 --registry ghcr.io/tenancy-dev --out bin/images [flags]`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options are the flags of both subcommands.
type options struct {
	command  string
	version  string
	registry string
	out      string
	// build only
	revision        string
	archivePlatform v1.Platform
	created         time.Time
	// push only
	insecure bool
}

// tagPattern is what an image tag may be (the distribution spec): the version becomes one.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	if len(args) == 0 || (args[0] != "build" && args[0] != "push") {
		return options{}, errors.New(usage)
	}
	o := options{command: args[0]}
	fs := flag.NewFlagSet("image "+o.command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.version, "version", "", "The release version, such as v0.1.0: the images' tag, label and the binaries' stamp (make passes $(VERSION)).")
	fs.StringVar(&o.registry, "registry", "ghcr.io/tenancy-dev", "Registry host and path the images are named under: <registry>/tenancy-manager:<version>.")
	fs.StringVar(&o.out, "out", "bin/images", "Directory of the OCI layouts and docker-archives.")
	var platform string
	if o.command == "build" {
		fs.StringVar(&o.revision, "revision", "", "The git commit for the org.opencontainers.image.revision label; defaults to git rev-parse HEAD, when that answers.")
		fs.StringVar(&platform, "archive-platform", ociimage.HostPlatform().String(), "Platform of the docker-archives (for docker load and kind load image-archive).")
	} else {
		fs.BoolVar(&o.insecure, "insecure", false, "Talk plain HTTP to the registry (localhost and 127.0.0.1 always are).")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q: the binaries are built from ./cmd; %s", fs.Args(), usage)
	}
	switch {
	case o.version == "":
		return options{}, errors.New("--version: required, such as v0.1.0 (make passes $(VERSION) from the VERSION file)")
	case !tagPattern.MatchString(o.version):
		return options{}, fmt.Errorf("--version: %q is not a valid image tag (letters, digits, _ . -; such as v0.1.0)", o.version)
	case o.out == "":
		return options{}, errors.New("--out: required, such as bin/images")
	}
	for _, c := range ociimage.Components {
		if _, err := ociimage.Tag(o.registry, c, o.version, o.nameOptions()...); err != nil {
			return options{}, fmt.Errorf("--registry: %q does not name a repository such as ghcr.io/tenancy-dev (a registry host, then a lower-case path): %w", o.registry, err)
		}
	}
	if o.command == "build" {
		p, err := v1.ParsePlatform(platform)
		if err != nil || !slices.ContainsFunc(ociimage.Platforms, p.Equals) {
			return options{}, fmt.Errorf("--archive-platform: %q is not one of the images' platforms %v", platform, ociimage.Platforms)
		}
		o.archivePlatform = *p
		if epoch := getenv("SOURCE_DATE_EPOCH"); epoch != "" {
			seconds, err := strconv.ParseInt(epoch, 10, 64)
			if err != nil || seconds < 0 {
				return options{}, fmt.Errorf("SOURCE_DATE_EPOCH: %q is not a number of seconds since 1970", epoch)
			}
			o.created = time.Unix(seconds, 0).UTC()
		}
	}
	return o, nil
}

func (o options) nameOptions() []name.Option {
	if o.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, getenv, os.Stderr)
	if err != nil {
		return err
	}
	if o.command == "build" {
		return build(ctx, o, stdout)
	}
	return push(ctx, o, stdout)
}

func build(ctx context.Context, o options, stdout io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	if o.revision == "" {
		o.revision = gitRevision(ctx, root)
	}
	built, err := ociimage.Build(ctx, ociimage.BuildOptions{
		RepoRoot: root, Out: o.out, Registry: o.registry,
		Metadata:        ociimage.Metadata{Version: o.version, Revision: o.revision, Created: o.created},
		ArchivePlatform: o.archivePlatform,
		Logf:            func(format string, args ...any) { _, _ = fmt.Fprintf(stdout, format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	for _, b := range built {
		if err := describe(stdout, b); err != nil {
			return err
		}
	}
	return nil
}

// describe prints what was built: the index, each platform's image and size, the archive.
func describe(w io.Writer, b ociimage.Built) error {
	digest, err := b.Index.Digest()
	if err != nil {
		return err
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%s@%s\n  OCI layout      %s (%s=%s)\n", b.Tag, digest, b.Layout, ociimage.RefName, b.Tag.TagStr())
	manifest, err := b.Index.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range manifest.Manifests {
		img, err := b.Index.Image(desc.Digest)
		if err != nil {
			return err
		}
		size, err := ociimage.Size(img)
		if err != nil {
			return err
		}
		fmt.Fprintf(&out, "  %-15s %s  %.1f MB compressed\n", desc.Platform, desc.Digest, float64(size)/1e6)
	}
	fmt.Fprintf(&out, "  docker-archive  %s\n", b.Archive)
	_, err = io.WriteString(w, out.String())
	return err
}

func push(ctx context.Context, o options, stdout io.Writer) error {
	for _, c := range ociimage.Components {
		tag, err := ociimage.Tag(o.registry, c, o.version, o.nameOptions()...)
		if err != nil {
			return err
		}
		dir := ociimage.LayoutDir(o.out, c)
		digest, err := ociimage.Push(ctx, dir, tag, remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--out: no image layout of %s at %s: run make image first", c.Image, dir)
		}
		if errors.Is(err, ociimage.ErrVersionMissing) {
			return fmt.Errorf("--version: %w: run make image first", err)
		}
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "Pushed %s@%s\n", tag, digest); err != nil {
			return err
		}
	}
	return nil
}

// moduleRoot is the directory of the main module's go.mod, where go build runs.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("finding the module (go env GOMOD): run this in the repository (%v)", err)
	}
	return filepath.Dir(gomod), nil
}

// gitRevision is the checked-out commit, or "" outside a git checkout.
func gitRevision(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
