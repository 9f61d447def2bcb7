// Package image_test builds the images as `make image` does (internal/ociimage: the binaries
// compiled for both platforms with the version stamp, the OCI layouts and docker-archives), reads
// them back from disk, checks what they say, and runs the binaries they hold: --version, then the
// manager with its webhooks against an envtest API server and PostgreSQL until it is ready, then
// authd against the same until it is ready. Last, it pushes the layouts to go-containerregistry's
// registry, in process, and pulls them back.
package image_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/ociimage"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

const (
	// version is what the test stamps: nothing else would print it.
	version           = "v0.0.0-image-test"
	revision          = "0123456789abcdef0123456789abcdef01234567"
	registryName      = "ghcr.io/tenancy-dev"
	operatorNamespace = "tenancy-system"
	// readyTimeout bounds each wait for a process to become ready; it is no performance claim.
	readyTimeout = 3 * time.Minute
)

func TestImages(t *testing.T) {
	testenv.SkipIfShort(t, "the manager and authd built from cmd/ for two platforms, envtest and PostgreSQL")
	ctx := t.Context()
	out := filepath.Join(t.TempDir(), "images")
	built, err := ociimage.Build(ctx, ociimage.BuildOptions{
		RepoRoot: testenv.RepoRoot(), Out: out, Registry: registryName,
		Metadata: ociimage.Metadata{Version: version, Revision: revision},
		BinDir:   t.TempDir(),
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatalf("building the images as make image does: %v", err)
	}
	// Everything below reads the layouts from disk (never Build's values in memory), validated
	// once here; the binaries the processes run come out of the host platform's images.
	layouts, indexes := map[string]string{}, map[string]v1.ImageIndex{}
	binDir := t.TempDir()
	for _, b := range built {
		c := b.Component
		layouts[c.Binary], indexes[c.Binary] = b.Layout, readLayout(t, c, b.Layout)
		extractBinary(t, c, indexes[c.Binary], binDir)
	}

	t.Run("layouts", func(t *testing.T) {
		for _, c := range ociimage.Components {
			checkLayout(t, c, indexes[c.Binary])
		}
	})
	t.Run("docker-archives", func(t *testing.T) {
		for _, b := range built {
			checkArchive(t, b)
		}
	})
	t.Run("version", func(t *testing.T) {
		for _, c := range ociimage.Components {
			out, err := exec.CommandContext(ctx, filepath.Join(binDir, c.Binary), "--version").CombinedOutput()
			if want := c.Binary + " " + version + " ("; err != nil || !strings.HasPrefix(string(out), want) {
				t.Errorf("/%s --version from the %s image: %q (%v), want a line starting %q", c.Binary, c.Image, out, err, want)
			}
		}
	})
	t.Run("manager and authd run", func(t *testing.T) {
		runManagerAndAuthd(t, binDir)
	})
	t.Run("push", func(t *testing.T) {
		pushAndPull(t, layouts, indexes)
	})
}

// readLayout reads the image index named version from the layout at dir, from disk: index.json
// must name it, and every blob must match its digest.
func readLayout(t *testing.T, c ociimage.Component, dir string) v1.ImageIndex {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("%s: the OCI layout has no index.json: %v", c.Image, err)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("%s: %s/index.json: %v", c.Image, dir, err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].Annotations[ociimage.RefName] != version {
		t.Errorf("%s: %s/index.json lists %+v, want one image index named %s", c.Image, dir, top.Manifests, version)
	}
	idx, err := ociimage.ReadLayout(dir, version)
	if err != nil {
		t.Fatalf("%s: reading back the layout: %v", c.Image, err)
	}
	return idx
}

func checkLayout(t *testing.T, c ociimage.Component, idx v1.ImageIndex) {
	t.Helper()
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":       c.Image,
		"org.opencontainers.image.description": c.Description,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.source":      "https://github.com/tenancy-dev/tenancy",
		"org.opencontainers.image.revision":    revision,
	}
	if diff := cmp.Diff(wantLabels, manifest.Annotations); diff != "" {
		t.Errorf("%s: the image index's annotations (-want +got):\n%s", c.Image, diff)
	}
	var platforms []string
	for _, desc := range manifest.Manifests {
		platforms = append(platforms, desc.Platform.String())
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatalf("%s %s: %v", c.Image, desc.Platform, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatalf("%s %s: %v", c.Image, desc.Platform, err)
		}
		want := v1.Config{
			User: "65532:65532", Entrypoint: []string{"/" + c.Binary}, WorkingDir: "/",
			Env: ociimage.Env, Labels: wantLabels,
		}
		if diff := cmp.Diff(want, cfg.Config); diff != "" {
			t.Errorf("%s %s: the image's config (-want +got):\n%s", c.Image, desc.Platform, diff)
		}
		if cfg.Platform().String() != desc.Platform.String() {
			t.Errorf("%s: the index says %s, the config %s", c.Image, desc.Platform, cfg.Platform())
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantLabels, m.Annotations); diff != "" {
			t.Errorf("%s %s: the manifest's annotations (-want +got):\n%s", c.Image, desc.Platform, diff)
		}
		size, err := ociimage.Size(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s: manifest %s, %.1f MB compressed", c.Image, desc.Platform, desc.Digest, float64(size)/1e6)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Errorf("%s: the index's platforms (-want +got):\n%s", c.Image, diff)
	}
}

func checkArchive(t *testing.T, b ociimage.Built) {
	t.Helper()
	wantTag := registryName + "/" + b.Component.Image + ":" + version
	if want := b.Component.Image + "-" + version + ".tar"; filepath.Base(b.Archive) != want {
		t.Errorf("%s: the docker-archive is %s, want %s, which hack/release publishes", b.Component.Image, b.Archive, want)
	}
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(b.Archive) })
	if err != nil {
		t.Fatalf("%s: reading the docker-archive %s: %v", b.Component.Image, b.Archive, err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{wantTag}) {
		t.Errorf("%s: %s's manifest.json is %+v, want one image tagged %s", b.Component.Image, b.Archive, manifest, wantTag)
	}
	tag, err := name.NewTag(wantTag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(b.Archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if host := ociimage.HostPlatform(); cfg.Platform().String() != host.String() || cfg.Config.User != "65532:65532" {
		t.Errorf("%s: %s holds a %s image run as %q, want %s run as 65532:65532", b.Component.Image, b.Archive, cfg.Platform(), cfg.Config.User, host)
	}
}

// extractBinary writes /<binary> of the host platform's image of idx to dir/<binary> with the
// mode the image gives it, and checks that mode and owner.
func extractBinary(t *testing.T, c ociimage.Component, idx v1.ImageIndex, dir string) {
	t.Helper()
	img, err := ociimage.PlatformImage(idx, ociimage.HostPlatform())
	if err != nil {
		t.Fatalf("%s: %v", c.Image, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s %s: the image has no /%s", c.Image, ociimage.HostPlatform(), c.Binary)
		}
		if err != nil {
			t.Fatalf("%s: reading the image's files: %v", c.Image, err)
		}
		if h.Name != c.Binary {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: /%s is type %q mode %#o owner %d:%d, want a regular file, 0755, root:root",
				c.Image, c.Binary, h.Typeflag, h.Mode, h.Uid, h.Gid)
		}
		f, err := os.OpenFile(filepath.Join(dir, c.Binary), os.O_CREATE|os.O_WRONLY|os.O_EXCL, h.FileInfo().Mode().Perm())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// runManagerAndAuthd runs the binaries taken out of the images as in a cluster: the manager as
// its service account with config/rbac's role, webhooks on a self-signed certificate; authd as
// its service account with a database login that is a member of tenancy_authd, nothing more.
func runManagerAndAuthd(t *testing.T, binDir string) {
	ctrllog.SetLogger(logr.Discard()) // envtest's own lines; the processes' logs are shown on failure
	ctx := t.Context()
	g := NewWithT(t)
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name: "image", OperatorNamespace: operatorNamespace, Policies: true, ManagerRBAC: true, AuthdRBAC: true,
	})
	if err != nil {
		t.Fatalf("starting envtest and a database: %v", err)
	}
	t.Cleanup(func() {
		if err := suite.Stop(context.Background()); err != nil {
			t.Errorf("stopping envtest and dropping the database: %v", err)
		}
	})
	dir := t.TempDir()
	ports := freePorts(t, 3)
	webhookPort, probePort, authdPort := ports[0], ports[1], ports[2]
	authdURL := fmt.Sprintf("http://127.0.0.1:%d", authdPort)
	if err := testenv.InstallWebhookConfigurations(ctx, suite.Client, fmt.Sprintf("https://127.0.0.1:%d", webhookPort)); err != nil {
		t.Fatal(err)
	}

	manager := startProcess(t, "manager (from the image)", filepath.Join(binDir, "manager"), dir,
		"--kubeconfig="+writeKubeconfig(t, suite.ManagerUser, filepath.Join(dir, "manager.kubeconfig")),
		"--database-url="+suite.DatabaseURL, "--namespace="+operatorNamespace,
		"--metrics-bind-address=127.0.0.1:0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-cert-dir="+filepath.Join(dir, "webhook-certs"), "--public-url="+authdURL)
	waitReady(t, g, manager, fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
	// Ready means the webhooks serve; the API server reaches them with the CA the manager
	// put into their configurations: a dry-run create passes both and stores nothing.
	probe := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "image-probe"}}
	g.Eventually(func() error { return suite.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll) }).
		WithContext(ctx).WithTimeout(readyTimeout).Should(Succeed(),
		"the API server could not call the manager's webhooks (the manager's log follows)")

	// authd is ready once the manager has made the signing keys (and their context keys, after the
	// schema migration that creates the role tenancy_authd).
	g.Eventually(func() error {
		return suite.Client.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: signing.SecretName}, &corev1.Secret{})
	}).WithContext(ctx).WithTimeout(readyTimeout).Should(Succeed(),
		"the manager made no Secret %s/%s (its log follows)", operatorNamespace, signing.SecretName)
	authd := startProcess(t, "authd (from the image)", filepath.Join(binDir, "authd"), dir,
		"--kubeconfig="+writeKubeconfig(t, suite.AuthdUser, filepath.Join(dir, "authd.kubeconfig")),
		"--database-url="+testenv.CreateLogin(t.Context(), t, suite.DatabaseURL, "image_authd_", "tenancy_authd"), "--namespace="+operatorNamespace,
		fmt.Sprintf("--listen=127.0.0.1:%d", authdPort), "--metrics-listen=127.0.0.1:0", "--public-url="+authdURL)
	waitReady(t, g, authd, authdURL+"/readyz")
}

// startProcess runs bin, stopping it when the test ends and showing its log if the test failed.
func startProcess(t *testing.T, what, bin, dir string, args ...string) *testenv.Process {
	t.Helper()
	logPath := filepath.Join(dir, filepath.Base(bin)+".log")
	p, err := testenv.StartProcess(what, logPath, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		if t.Failed() {
			t.Logf("===== %s (last lines of %s) =====\n%s", what, logPath, tail(p.Log()))
		}
	})
	return p
}

// waitReady waits until readyURL answers 200, and fails at once if the process ends.
func waitReady(t *testing.T, g *WithT, p *testenv.Process, readyURL string) {
	t.Helper()
	g.Eventually(func(g Gomega) {
		if exited, err := p.Exited(); exited {
			StopTrying(fmt.Sprintf("%s exited (%v) before %s answered 200 (its log follows)", p.Name, err, readyURL)).Now()
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, readyURL, nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred(), "%s: GET %s", p.Name, readyURL)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s: GET %s: %s", p.Name, readyURL, body)
	}).WithContext(t.Context()).WithTimeout(readyTimeout).WithPolling(250*time.Millisecond).Should(Succeed(),
		"%s never became ready (its log follows)", p.Name)
}

// pushAndPull pushes each layout to an in-process registry with the push code of make
// image-push, pulls it back by tag and compares digests.
func pushAndPull(t *testing.T, layouts map[string]string, indexes map[string]v1.ImageIndex) {
	server := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer server.Close()
	host := strings.TrimPrefix(server.URL, "http://")
	for _, c := range ociimage.Components {
		tag, err := ociimage.Tag(host+"/tenancy-dev", c, version)
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := ociimage.Push(t.Context(), layouts[c.Binary], tag)
		if err != nil {
			t.Fatalf("%s: pushing %s: %v", c.Image, tag, err)
		}
		want, err := indexes[c.Binary].Digest()
		if err != nil {
			t.Fatal(err)
		}
		if pushed != want {
			t.Errorf("%s: Push answered %s, want the layout's %s", c.Image, pushed, want)
		}
		idx, err := remote.Index(tag, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatalf("%s: pulling %s back: %v", c.Image, tag, err)
		}
		if got, _ := idx.Digest(); got != want {
			t.Errorf("%s: %s is %s in the registry, want the layout's %s", c.Image, tag, got, want)
		}
		for _, platform := range ociimage.Platforms {
			img, err := remote.Image(tag, remote.WithContext(t.Context()), remote.WithPlatform(platform))
			if err != nil {
				t.Fatalf("%s: pulling %s for %s: %v", c.Image, tag, platform, err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Platform().String() != platform.String() || cfg.Config.Labels[ociimage.LabelVersion] != version {
				t.Errorf("%s: %s for %s pulled a %s image of version %q", c.Image, tag, platform, cfg.Platform(), cfg.Config.Labels[ociimage.LabelVersion])
			}
		}
	}
}

func writeKubeconfig(t *testing.T, user *envtest.AuthenticatedUser, path string) string {
	t.Helper()
	data, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	return ports
}

// tail is the end of a process' log, enough to see why it failed.
func tail(log string) string {
	lines := strings.Split(log, "\n")
	return strings.Join(lines[max(0, len(lines)-80):], "\n")
}
