package upgrade_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// previousRelease is the release users upgrade from: the test builds its manager from the git
// history and installs its manifests. At every release, set it to the tag of the release just
// made (after v0.1.0 ships: "v0.1.0"), so that the next release is tested against what users run.
// For v0.1.0, the first release, there is no tag before it: e2b8fde is main as it was before the
// release work began (the full hash: a short one can become ambiguous as history grows).
const previousRelease = "e2b8fde6bfef7899ab35554367ce08d0e9bf176e"

// fieldManager is the field manager of `kubectl apply --server-side`, with which people and
// GitOps tools install a release and its tenants.
const fieldManager = "kubectl"

// exportRelease writes the tree of commit (any revision git understands) into dir, as
// `git archive` exports it. A clone without the commit fails the test with what to do: the test
// must not pass by skipping the upgrade it is there to prove.
func exportRelease(ctx context.Context, commit, dir string) {
	GinkgoHelper()
	root := testenv.RepoRoot()
	if out, err := git(ctx, root, "rev-parse", "--is-inside-work-tree"); err != nil {
		Fail(fmt.Sprintf("the upgrade test builds the previous release (%s) from the git history, but %s is not a git clone: %v\n%s",
			commit, root, err, out))
	}
	if _, err := git(ctx, root, "cat-file", "-e", commit+"^{commit}"); err != nil {
		shallow, _ := git(ctx, root, "rev-parse", "--is-shallow-repository")
		if strings.TrimSpace(string(shallow)) == "true" {
			Fail(fmt.Sprintf("the upgrade test builds the previous release from commit %s, which this shallow clone lacks: "+
				"run `git fetch --unshallow --tags` (in CI, check out with the full history: actions/checkout's fetch-depth: 0)", commit))
		}
		Fail(fmt.Sprintf("the upgrade test builds the previous release from commit %s, which this clone lacks: "+
			"run `git fetch --tags origin` (a tag) or `git fetch origin` (a commit of main)", commit))
	}
	cmd := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", commit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(cmd.Start()).To(Succeed())
	untarErr := untar(stdout, dir)
	_, _ = io.Copy(io.Discard, stdout)
	Expect(cmd.Wait()).To(Succeed(), "git archive %s: %s", commit, stderr.String())
	Expect(untarErr).NotTo(HaveOccurred(), "extracting git archive %s", commit)
}

func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).CombinedOutput()
}

// untar extracts the directories, files and symbolic links of a tar stream into dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("%q leaves the archive's directory", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFile(path, tr, h.FileInfo().Mode().Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, path)
		case tar.TypeXGlobalHeader: // git archive's commit id
		default:
			err = fmt.Errorf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}

// buildReleaseManager builds tree's cmd/manager into dir with the tree's own go.mod, and returns
// the binary's path. -trimpath keeps the build cache valid across the temporary directories the
// tree lands in, so that only the first run compiles it.
func buildReleaseManager(ctx context.Context, tree, dir string) string {
	GinkgoHelper()
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/manager")
	cmd.Dir = tree
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/manager of %s: %s", previousRelease, out)
	return bin
}

// installRelease applies the manifests of the release in tree that a cluster holds besides the
// manager's Deployment, with server-side apply as `kubectl apply --server-side` would: the CRDs
// (config/crd/bases), the manager's ClusterRole and leader-election Role (config/rbac) bound to
// the manager's user, the admission policy (config/policy), and the webhook configurations
// (config/webhook) calling webhookURL instead of the in-cluster Service. Applying a later
// release's tree over an earlier one is the upgrade: what the later one dropped goes.
func installRelease(ctx context.Context, c client.Client, tree, webhookURL string) {
	GinkgoHelper()
	var crds []*unstructured.Unstructured
	bases, err := filepath.Glob(filepath.Join(tree, "config", "crd", "bases", "*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(bases).NotTo(BeEmpty(), "%s has no CRDs in config/crd/bases", tree)
	for _, path := range bases {
		crds = append(crds, readManifests(path)...)
	}
	applyAll(ctx, c, crds)
	for _, crd := range crds {
		waitEstablished(ctx, c, crd.GetName())
	}

	var roles []*unstructured.Unstructured
	for _, role := range readManifests(filepath.Join(tree, "config", "rbac", "role.yaml")) {
		roles = append(roles, role, binding("ClusterRoleBinding", role.GetName(), ""))
	}
	for _, role := range readManifests(filepath.Join(tree, "config", "rbac", "leader_election_role.yaml")) {
		role.SetNamespace(operatorNamespace)
		roles = append(roles, role, binding("RoleBinding", role.GetName(), operatorNamespace))
	}
	applyAll(ctx, c, roles)

	policies, err := filepath.Glob(filepath.Join(tree, "config", "policy", "*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	for _, path := range policies {
		if !strings.HasPrefix(filepath.Base(path), "kustomiz") {
			applyAll(ctx, c, readManifests(path))
		}
	}

	pointWebhooks(ctx, c, tree, webhookURL)
}

// pointWebhooks applies the webhook configurations of the release in tree (config/webhook), named
// as config/default names them, calling baseURL (https://host:port) at their Service's path, with
// no caBundle: --webhook-self-signed puts its own in.
func pointWebhooks(ctx context.Context, c client.Client, tree, baseURL string) {
	GinkgoHelper()
	configurations := readManifests(filepath.Join(tree, "config", "webhook", "manifests.yaml"))
	for _, conf := range configurations {
		pointAt(conf, baseURL)
	}
	applyAll(ctx, c, configurations)
}

// binding binds the role of that kind and name to the manager's user (the name the admission
// policy and the webhooks know the operator by).
func binding(kind, role, namespace string) *unstructured.Unstructured {
	b := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1",
		"kind":       kind,
		"metadata":   map[string]any{"name": role},
		"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": strings.TrimSuffix(kind, "Binding"), "name": role},
		"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": testenv.ManagerUsername}},
	}}
	if namespace != "" {
		b.SetNamespace(namespace)
	}
	return b
}

// pointAt names a webhook configuration and makes its webhooks call baseURL.
func pointAt(conf *unstructured.Unstructured, baseURL string) {
	GinkgoHelper()
	switch conf.GetKind() {
	case "MutatingWebhookConfiguration":
		conf.SetName(webhooks.MutatingConfigurationName)
	case "ValidatingWebhookConfiguration":
		conf.SetName(webhooks.ValidatingConfigurationName)
	default:
		Fail(fmt.Sprintf("config/webhook/manifests.yaml holds a %s", conf.GetKind()))
	}
	hooks, _, err := unstructured.NestedSlice(conf.Object, "webhooks")
	Expect(err).NotTo(HaveOccurred())
	for i, h := range hooks {
		hook := h.(map[string]any)
		path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		Expect(path).NotTo(BeEmpty(), "webhook %v calls no Service path", hook["name"])
		hook["clientConfig"] = map[string]any{"url": baseURL + path}
		hooks[i] = hook
	}
	Expect(unstructured.SetNestedSlice(conf.Object, hooks, "webhooks")).To(Succeed())
}

// applyAll applies the objects in order with server-side apply.
func applyAll(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) {
	GinkgoHelper()
	for _, obj := range objs {
		Expect(c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(fieldManager))).
			To(Succeed(), "applying %s %s", obj.GetKind(), name(obj))
	}
}

// waitEstablished waits until the API server serves the CRD's current spec.
func waitEstablished(ctx context.Context, c client.Client, crdName string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		g.Expect(c.Get(ctx, client.ObjectKey{Name: crdName}, crd)).To(Succeed())
		conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		established := false
		for _, cond := range conditions {
			m := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				established = true
			}
		}
		g.Expect(established).To(BeTrue(), "CRD %s is not Established; its conditions: %v", crdName, conditions)
	}).WithContext(ctx).Should(Succeed())
}

// readManifests decodes every object of a multi-document YAML file.
func readManifests(path string) []*unstructured.Unstructured {
	GinkgoHelper()
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return decodeManifests(data, path)
}

func decodeManifests(data []byte, what string) []*unstructured.Unstructured {
	GinkgoHelper()
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		err := decoder.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		Expect(err).NotTo(HaveOccurred(), "decoding %s", what)
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// name is an object's namespace/name, or its name when it has no namespace.
func name(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}
