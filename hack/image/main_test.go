package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tenancy-dev/tenancy/internal/ociimage"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // a substring; empty means no error
		reason  string
	}{
		{name: "build", args: []string{"build", "--version", "v0.1.0", "--registry", "ghcr.io/tenancy-dev", "--out", "bin/images"},
			reason: "what make image runs"},
		{name: "push", args: []string{"push", "--version", "v0.1.0", "--registry", "ghcr.io/tenancy-dev", "--out", "bin/images"},
			reason: "what make image-push runs"},
		{name: "no subcommand", args: nil, wantErr: "usage: image build|push",
			reason: "say how to call it"},
		{name: "unknown subcommand", args: []string{"load"}, wantErr: "usage: image build|push",
			reason: "only build and push"},
		{name: "missing version", args: []string{"build", "--registry", "ghcr.io/tenancy-dev"}, wantErr: "--version: required",
			reason: "an image without a version cannot be tagged"},
		{name: "version not a tag", args: []string{"push", "--version", "v0.1.0+dirty"}, wantErr: "--version: \"v0.1.0+dirty\" is not a valid image tag",
			reason: "+ is not allowed in a tag"},
		{name: "registry without a host", args: []string{"push", "--version", "v0.1.0", "--registry", "tenancy-dev"}, wantErr: "--registry: \"tenancy-dev\"",
			reason: "it would silently mean Docker Hub"},
		{name: "registry upper case", args: []string{"build", "--version", "v0.1.0", "--registry", "ghcr.io/Tenancy"}, wantErr: "--registry:",
			reason: "repositories are lower case"},
		{name: "binaries as arguments", args: []string{"build", "--version", "v0.1.0", "bin/manager"}, wantErr: "unexpected arguments",
			reason: "the binaries are built here, not passed in"},
		{name: "archive platform", args: []string{"build", "--version", "v0.1.0", "--archive-platform", "linux/arm64"},
			reason: "an arm64 archive, from an amd64 machine"},
		{name: "archive platform not built", args: []string{"build", "--version", "v0.1.0", "--archive-platform", "linux/s390x"}, wantErr: "--archive-platform:",
			reason: "only the platforms the index holds"},
		{name: "SOURCE_DATE_EPOCH", args: []string{"build", "--version", "v0.1.0"}, env: map[string]string{"SOURCE_DATE_EPOCH": "1700000000"},
			reason: "reproducible builds' convention"},
		{name: "SOURCE_DATE_EPOCH not a number", args: []string{"build", "--version", "v0.1.0"}, env: map[string]string{"SOURCE_DATE_EPOCH": "yesterday"},
			wantErr: "SOURCE_DATE_EPOCH: \"yesterday\"", reason: "say which setting is wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("parseFlags(%q): %v (%s)", tt.args, err, tt.reason)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("parseFlags(%q): %v, want an error containing %q (%s)", tt.args, err, tt.wantErr, tt.reason)
			}
			if epoch := tt.env["SOURCE_DATE_EPOCH"]; err == nil && epoch != "" && !o.created.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("SOURCE_DATE_EPOCH=%s gave created %s", epoch, o.created)
			}
		})
	}
}

// writeLayouts writes layouts of every component (stand-in binaries) tagged version into out.
func writeLayouts(t *testing.T, out, version string) {
	t.Helper()
	for _, c := range ociimage.Components {
		binaries := ociimage.Binaries{}
		for _, p := range ociimage.Platforms {
			path := filepath.Join(t.TempDir(), c.Binary)
			if err := os.WriteFile(path, []byte(c.Binary+" "+p.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			binaries[p.String()] = path
		}
		idx, err := ociimage.Index(c, ociimage.Metadata{Version: version}, binaries)
		if err != nil {
			t.Fatal(err)
		}
		if err := ociimage.WriteLayout(ociimage.LayoutDir(out, c), idx, version); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPushWithoutLayoutSaysToBuildFirst(t *testing.T) {
	out := filepath.Join(t.TempDir(), "images")
	err := run(context.Background(), []string{"push", "--version", "v1.2.3", "--registry", "127.0.0.1:1/tenancy", "--out", out},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--out: no image layout of tenancy-manager") || !strings.Contains(err.Error(), "run make image first") {
		t.Errorf("pushing without layouts: %v, want an error naming --out and saying to run make image first", err)
	}

	writeLayouts(t, out, "v1.2.3")
	err = run(context.Background(), []string{"push", "--version", "v1.2.4", "--registry", "127.0.0.1:1/tenancy", "--out", out},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "--version:") || !strings.Contains(err.Error(), "v1.2.3") {
		t.Errorf("pushing another version than the layouts hold: %v, want an error naming --version and the version built", err)
	}
}

func TestPushToARegistry(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of whoever runs the test
	server := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer server.Close()
	u, err := url.Parse(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "images")
	writeLayouts(t, out, "v1.2.3")

	var stdout bytes.Buffer
	args := []string{"push", "--version", "v1.2.3", "--registry", u.Host + "/tenancy-dev", "--out", out}
	if err := run(context.Background(), args, func(string) string { return "" }, &stdout); err != nil {
		t.Fatalf("push: %v", err)
	}
	for _, c := range ociimage.Components {
		layoutIndex, err := ociimage.ReadLayout(ociimage.LayoutDir(out, c), "v1.2.3")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := layoutIndex.Digest()
		tag, err := name.NewTag(u.Host + "/tenancy-dev/" + c.Image + ":v1.2.3")
		if err != nil {
			t.Fatal(err)
		}
		pulled, err := remote.Index(tag)
		if err != nil {
			t.Fatalf("pulling %s back: %v", tag, err)
		}
		if got, _ := pulled.Digest(); got != want {
			t.Errorf("%s is %s in the registry, want the layout's %s", tag, got, want)
		}
		if line := "Pushed " + tag.String() + "@" + want.String(); !strings.Contains(stdout.String(), line) {
			t.Errorf("push printed %q, want a line %q", stdout.String(), line)
		}
	}
}
