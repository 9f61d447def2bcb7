// Package deploy checks what config/ gives a cluster. Each kustomize overlay is built with
// kustomize's Go API and every object goes to a real API server (envtest) with server-side apply
// and dry-run, next to cert-manager's and the Prometheus Operator's CRDs as their projects publish
// them; the wiring the API server does not check (ports, selectors, Secrets, certificates) is
// checked here; the leader-election Role is exercised with client-go's leader election; the CRDs
// must explain every field; and the Argo CD health checks must agree with kstatus.
package deploy_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// The third-party CRDs that the overlays use, from the Go modules of their projects (the module
// proxy serves them like any module; the CRD files are the projects' own generated ones).
const (
	certManagerModule        = "github.com/cert-manager/cert-manager@v1.21.2"
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
)

// overlays are the kustomizations a user applies, relative to config/.
var overlays = []string{"default", "self-signed", "monitoring", "samples"}

// The Secrets config/default expects the user to create (docs/deployment.md), and the one
// cert-manager writes.
var (
	userSecrets        = []string{"tenancy-authd-database", "tenancy-database"}
	certManagerSecrets = []string{"webhook-server-cert"}
)

// fieldOwner is the field manager of the dry-run applies.
const fieldOwner = "tenancy-deploy-test"

// TestOverlaysApplyToAnAPIServer: the API server takes every object of every overlay, without a
// refusal or a warning.
func TestOverlaysApplyToAnAPIServer(t *testing.T) {
	needsControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The API server's warnings matter too: Pod Security admission only warns about a Deployment
	// whose pods its namespace would refuse.
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(controlPlane.Config)
	cfg.WarningHandlerWithContext = warnings
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objects := build(t, overlay)
			// A dry run creates nothing, so the namespaces that the objects go to must exist first,
			// labels (Pod Security) included, as they do once kubectl has applied them.
			for _, ns := range objects {
				if ns.GetKind() == "Namespace" {
					if err := c.Create(ctx, ns.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
						t.Fatalf("config/%s: creating namespace %s: %v", overlay, ns.GetName(), err)
					}
				}
			}
			for _, obj := range objects {
				namespaced, err := c.IsObjectNamespaced(obj)
				if err != nil {
					t.Errorf("config/%s: %s %s: the API server does not know the kind: %v", overlay, obj.GetKind(), nameOf(obj), err)
					continue
				}
				if !namespaced && obj.GetNamespace() != "" {
					t.Errorf("config/%s: %s %s is cluster-scoped but has a namespace", overlay, obj.GetKind(), nameOf(obj))
				}
				warnings.reset()
				err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
					client.FieldOwner(fieldOwner), client.ForceOwnership, client.DryRunAll)
				if err != nil {
					t.Errorf("config/%s: %s %s: the API server refuses it: %v", overlay, obj.GetKind(), nameOf(obj), err)
				}
				for _, w := range warnings.take() {
					t.Errorf("config/%s: %s %s: the API server warns: %s", overlay, obj.GetKind(), nameOf(obj), w)
				}
			}
		})
	}
}

// warningRecorder keeps the API server's warnings of the requests in flight.
type warningRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

func (w *warningRecorder) reset() { w.take() }

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	taken := w.messages
	w.messages = nil
	return taken
}

// TestDefaultNeedsNoPrometheusOperator: config/default must apply to a cluster without the
// Prometheus Operator's CRDs, and config/monitoring must add a ServiceMonitor for every metrics
// endpoint.
func TestDefaultNeedsNoPrometheusOperator(t *testing.T) {
	for _, obj := range build(t, "default") {
		if obj.GroupVersionKind().Group == "monitoring.coreos.com" {
			t.Errorf("config/default: %s %s needs the Prometheus Operator; it belongs in config/prometheus", obj.GetKind(), nameOf(obj))
		}
	}
	var monitors []string
	for _, obj := range build(t, "monitoring") {
		if obj.GetKind() == "ServiceMonitor" {
			monitors = append(monitors, obj.GetName())
		}
	}
	slices.Sort(monitors)
	if want := []string{"tenancy-authd-metrics", "tenancy-manager-metrics"}; !slices.Equal(monitors, want) {
		t.Errorf("config/monitoring: ServiceMonitors %v, want %v", monitors, want)
	}
}

// TestWiring checks what the API server accepts but a cluster would get wrong: names and ports
// that must match across objects.
func TestWiring(t *testing.T) {
	for _, overlay := range []string{"default", "self-signed", "monitoring"} {
		t.Run(overlay, func(t *testing.T) {
			w := newWiring(t, build(t, overlay))
			w.checkDeployments(t)
			w.checkServices(t)
			w.checkNetworkPolicies(t)
			w.checkServiceMonitors(t)
			w.checkWebhooks(t)
			w.checkExternalSecrets(t)
		})
	}
}

// build runs kustomize on config/<overlay> as `kubectl apply -k` would.
func build(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "config", overlay)
	options := krusty.MakeDefaultOptions()
	// As `kustomize build` and `kubectl apply -k`: the kustomization's sortOptions, else the
	// legacy order (Namespaces and CRDs first).
	options.Reorder = krusty.ReorderOptionUnspecified
	resources, err := krusty.MakeKustomizer(options).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", overlay, err)
	}
	var objects []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		// Through JSON, so that numbers are int64 and float64 as in objects read from an API server.
		data, err := r.MarshalJSON()
		obj := &unstructured.Unstructured{}
		if err == nil {
			err = obj.UnmarshalJSON(data)
		}
		if err != nil {
			t.Fatalf("config/%s: %s: %v", overlay, r.CurId(), err)
		}
		objects = append(objects, obj)
	}
	if len(objects) == 0 {
		t.Fatalf("kustomize build config/%s: no objects", overlay)
	}
	return objects
}

// The control plane that the tests share: envtest with the tenancy CRDs and the third-party ones.
var (
	controlPlane *envtest.Environment
	admin        client.Client // a cluster admin (system:masters)
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testenv.Short() {
		// The tests that need the API server skip themselves (needsControlPlane); the others
		// build and read config/ alone.
		os.Exit(m.Run())
	}
	code, err := runWithControlPlane(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithControlPlane(m *testing.M) (int, error) {
	certManager, err := moduleDir(certManagerModule)
	if err != nil {
		return 0, err
	}
	prometheusOperator, err := moduleDir(prometheusOperatorModule)
	if err != nil {
		return 0, err
	}
	controlPlane, err = testenv.NewControlPlane()
	if err != nil {
		return 0, err
	}
	controlPlane.CRDInstallOptions = envtest.CRDInstallOptions{Paths: []string{
		filepath.Join(certManager, "deploy", "crds", "cert-manager.io_certificates.yaml"),
		filepath.Join(certManager, "deploy", "crds", "cert-manager.io_issuers.yaml"),
		filepath.Join(prometheusOperator, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml"),
	}, ErrorIfPathMissing: true}
	cfg, err := controlPlane.Start()
	if err != nil {
		return 0, fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = controlPlane.Stop() }()
	if admin, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// needsControlPlane skips t under -short, where TestMain starts no control plane.
func needsControlPlane(t *testing.T) {
	t.Helper()
	testenv.SkipIfShort(t, "envtest and the third-party CRDs from the Go module proxy")
}

// moduleDir downloads a module (once, into the module cache) and returns its directory.
func moduleDir(module string) (string, error) {
	tmp, err := os.MkdirTemp("", "tenancy-deploy-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = tmp // outside this module, so that go.mod stays as it is
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); jsonErr != nil || info.Error != "" || err != nil {
		return "", fmt.Errorf("go mod download %s: %v %s %v", module, err, info.Error, jsonErr)
	}
	return info.Dir, nil
}

func createNamespace(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

func nameOf(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// wiring indexes an overlay's objects by kind for the cross-object checks.
type wiring struct {
	all             []*unstructured.Unstructured
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	networkPolicies []*networkingv1.NetworkPolicy
	configMaps      []string
}

func newWiring(t *testing.T, objects []*unstructured.Unstructured) *wiring {
	t.Helper()
	w := &wiring{all: objects}
	for _, obj := range objects {
		switch obj.GetKind() {
		case "Deployment":
			w.deployments = append(w.deployments, convert[appsv1.Deployment](t, obj))
		case "Service":
			w.services = append(w.services, convert[corev1.Service](t, obj))
		case "NetworkPolicy":
			w.networkPolicies = append(w.networkPolicies, convert[networkingv1.NetworkPolicy](t, obj))
		case "ConfigMap":
			w.configMaps = append(w.configMaps, obj.GetName())
		}
	}
	if len(w.deployments) == 0 {
		t.Fatal("no Deployment in the overlay")
	}
	return w
}

func convert[T any](t *testing.T, obj *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), nameOf(obj), err)
	}
	return out
}

// podsMatching returns the Deployments in namespace whose pods carry the selected labels.
func (w *wiring) podsMatching(namespace string, selector labels.Selector) []*appsv1.Deployment {
	var matched []*appsv1.Deployment
	for _, d := range w.deployments {
		if d.Namespace == namespace && selector.Matches(labels.Set(d.Spec.Template.Labels)) {
			matched = append(matched, d)
		}
	}
	return matched
}

// hasPort reports whether a container of d exposes port (a name or a number).
func hasPort(d *appsv1.Deployment, port intstr.IntOrString) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

// checkDeployments: two replicas kept through drains by a PodDisruptionBudget, the pod hardening
// that the restricted Pod Security Standard and a read-only root need, resources, probes on ports
// the container has, and ConfigMaps that exist.
func (w *wiring) checkDeployments(t *testing.T) {
	for _, d := range w.deployments {
		spec := d.Spec.Template.Spec
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("Deployment %s: replicas %v, want at least 2", nameOf(d), d.Spec.Replicas)
		}
		if !w.hasDisruptionBudget(t, d) {
			t.Errorf("Deployment %s: no PodDisruptionBudget selects its pods", nameOf(d))
		}
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("Deployment %s container %s: no securityContext", nameOf(d), c.Name)
				continue
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("Deployment %s container %s: root filesystem is writable", nameOf(d), c.Name)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("Deployment %s container %s: allows privilege escalation", nameOf(d), c.Name)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
				t.Errorf("Deployment %s container %s: does not drop ALL capabilities", nameOf(d), c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("Deployment %s container %s: needs a CPU request and a memory limit", nameOf(d), c.Name)
			}
			for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				switch {
				case probe == nil || probe.HTTPGet == nil:
					t.Errorf("Deployment %s container %s: no HTTP %s probe", nameOf(d), c.Name, name)
				case !hasPort(d, probe.HTTPGet.Port):
					t.Errorf("Deployment %s container %s: %s probe on port %s, which the container does not expose",
						nameOf(d), c.Name, name, probe.HTTPGet.Port.String())
				}
			}
			for _, env := range c.Env {
				if ref := env.ValueFrom; ref != nil && ref.ConfigMapKeyRef != nil && !slices.Contains(w.configMaps, ref.ConfigMapKeyRef.Name) {
					t.Errorf("Deployment %s container %s: env %s names ConfigMap %s, which the overlay does not have",
						nameOf(d), c.Name, env.Name, ref.ConfigMapKeyRef.Name)
				}
			}
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
			psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("Deployment %s: the pod must run as non-root with the RuntimeDefault seccomp profile", nameOf(d))
		}
	}
}

func (w *wiring) hasDisruptionBudget(t *testing.T, d *appsv1.Deployment) bool {
	for _, obj := range w.all {
		if obj.GetKind() != "PodDisruptionBudget" || obj.GetNamespace() != d.Namespace {
			continue
		}
		pdb := convert[policyv1.PodDisruptionBudget](t, obj)
		selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: %v", nameOf(pdb), err)
		}
		if selector.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

// checkServices: every Service selects pods, and each target port is one those pods expose.
func (w *wiring) checkServices(t *testing.T) {
	for _, s := range w.services {
		pods := w.podsMatching(s.Namespace, labels.SelectorFromSet(s.Spec.Selector))
		if len(s.Spec.Selector) == 0 || len(pods) == 0 {
			t.Errorf("Service %s: selects no Deployment's pods", nameOf(s))
			continue
		}
		for _, p := range s.Spec.Ports {
			for _, d := range pods {
				if !hasPort(d, p.TargetPort) {
					t.Errorf("Service %s port %s: target port %s is not a port of Deployment %s",
						nameOf(s), p.Name, p.TargetPort.String(), nameOf(d))
				}
			}
		}
	}
}

// checkNetworkPolicies: each allowed port is one the selected pods expose, and every port that a
// Service sends traffic to is allowed by some policy (the namespace denies ingress by default).
func (w *wiring) checkNetworkPolicies(t *testing.T) {
	if len(w.networkPolicies) == 0 {
		t.Fatal("no NetworkPolicy in the overlay")
	}
	allowed := map[*appsv1.Deployment][]intstr.IntOrString{}
	for _, np := range w.networkPolicies {
		selector, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", nameOf(np), err)
		}
		for _, d := range w.podsMatching(np.Namespace, selector) {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port == nil || !hasPort(d, *p.Port) {
						t.Errorf("NetworkPolicy %s: port %v is not a port of Deployment %s", nameOf(np), p.Port, nameOf(d))
						continue
					}
					allowed[d] = append(allowed[d], *p.Port)
				}
			}
		}
	}
	for _, s := range w.services {
		for _, d := range w.podsMatching(s.Namespace, labels.SelectorFromSet(s.Spec.Selector)) {
			for _, p := range s.Spec.Ports {
				if !slices.Contains(allowed[d], p.TargetPort) {
					t.Errorf("Service %s port %s: no NetworkPolicy lets traffic reach port %s of Deployment %s",
						nameOf(s), p.Name, p.TargetPort.String(), nameOf(d))
				}
			}
		}
	}
}

// checkServiceMonitors: each endpoint names a port of a Service that the monitor selects.
func (w *wiring) checkServiceMonitors(t *testing.T) {
	for _, obj := range w.all {
		if obj.GetKind() != "ServiceMonitor" {
			continue
		}
		var monitor struct {
			Spec struct {
				Selector  metav1.LabelSelector `json:"selector"`
				Endpoints []struct {
					Port string `json:"port"`
				} `json:"endpoints"`
			} `json:"spec"`
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &monitor); err != nil {
			t.Fatalf("ServiceMonitor %s: %v", nameOf(obj), err)
		}
		selector, err := metav1.LabelSelectorAsSelector(&monitor.Spec.Selector)
		if err != nil {
			t.Fatalf("ServiceMonitor %s: %v", nameOf(obj), err)
		}
		var selected []*corev1.Service
		for _, s := range w.services {
			if s.Namespace == obj.GetNamespace() && selector.Matches(labels.Set(s.Labels)) {
				selected = append(selected, s)
			}
		}
		if len(selected) != 1 {
			t.Errorf("ServiceMonitor %s: selects %d Services, want exactly one", nameOf(obj), len(selected))
			continue
		}
		for _, e := range monitor.Spec.Endpoints {
			if !slices.ContainsFunc(selected[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
				t.Errorf("ServiceMonitor %s: port %s is not a port of Service %s", nameOf(obj), e.Port, nameOf(selected[0]))
			}
		}
	}
}

// checkWebhooks: the webhook configurations call a Service of the overlay on port 443, whose
// certificate covers that Service's name: either cert-manager issues it into the Secret the
// manager mounts and injects its CA, or (no Certificate in the overlay) the manager makes it with
// --webhook-self-signed for the Service name it knows and injects the CA itself.
func (w *wiring) checkWebhooks(t *testing.T) {
	certificate, ok := w.certificate(t)
	var coveredHosts []string
	if ok {
		coveredHosts = certificate.Spec.DNSNames
		mounted := false
		for _, d := range w.deployments {
			for _, v := range d.Spec.Template.Spec.Volumes {
				mounted = mounted || (v.Secret != nil && v.Secret.SecretName == certificate.Spec.SecretName)
			}
		}
		if certificate.Spec.SecretName == "" || !mounted {
			t.Errorf("the Certificate's Secret %q is mounted by no Deployment", certificate.Spec.SecretName)
		}
	} else {
		manager := w.selfSignedManager(t)
		if manager == nil {
			return
		}
		coveredHosts = []string{"tenancy-webhook-service." + manager.Namespace + ".svc"}
	}
	for _, obj := range w.all {
		kind := obj.GetKind()
		if kind != "MutatingWebhookConfiguration" && kind != "ValidatingWebhookConfiguration" {
			continue
		}
		injectFrom := obj.GetAnnotations()["cert-manager.io/inject-ca-from"]
		if want := certificate.Metadata.Namespace + "/" + certificate.Metadata.Name; ok && injectFrom != want {
			t.Errorf("%s %s: cert-manager.io/inject-ca-from is %q, want %q", kind, obj.GetName(), injectFrom, want)
		}
		if !ok && injectFrom != "" {
			t.Errorf("%s %s: cert-manager.io/inject-ca-from is %q, but the overlay has no Certificate", kind, obj.GetName(), injectFrom)
		}
		hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
		for _, h := range hooks {
			name, _, _ := unstructured.NestedString(h.(map[string]any), "name")
			svcName, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "service", "name")
			svcNamespace, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "service", "namespace")
			i := slices.IndexFunc(w.services, func(s *corev1.Service) bool { return s.Name == svcName && s.Namespace == svcNamespace })
			if i < 0 {
				t.Errorf("%s webhook %s: calls Service %s/%s, which the overlay does not have", kind, name, svcNamespace, svcName)
				continue
			}
			if !slices.ContainsFunc(w.services[i].Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 443 }) {
				t.Errorf("%s webhook %s: Service %s has no port 443", kind, name, nameOf(w.services[i]))
			}
			if host := svcName + "." + svcNamespace + ".svc"; !slices.Contains(coveredHosts, host) {
				t.Errorf("%s webhook %s: the certificate does not cover %s (it covers %v)", kind, name, host, coveredHosts)
			}
		}
	}
}

// webhookCertificate is the part of a cert-manager Certificate the wiring checks read.
type webhookCertificate struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		DNSNames   []string `json:"dnsNames"`
		SecretName string   `json:"secretName"`
	} `json:"spec"`
}

// certificate is the overlay's cert-manager Certificate, if it has one.
func (w *wiring) certificate(t *testing.T) (webhookCertificate, bool) {
	var certificate webhookCertificate
	for _, obj := range w.all {
		if obj.GetKind() == "Certificate" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &certificate); err != nil {
				t.Fatal(err)
			}
			return certificate, true
		}
	}
	return certificate, false
}

// selfSignedManager is the manager Deployment of an overlay without cert-manager: it must make the
// certificate itself and mount none.
func (w *wiring) selfSignedManager(t *testing.T) *appsv1.Deployment {
	for _, d := range w.deployments {
		if d.Name != "tenancy-manager" {
			continue
		}
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--webhook-self-signed") {
			t.Errorf("Deployment %s: the overlay has no Certificate, so the manager needs --webhook-self-signed", nameOf(d))
		}
		if len(d.Spec.Template.Spec.Volumes) != 0 {
			t.Errorf("Deployment %s: --webhook-self-signed serves the certificate from memory; the volumes %v are left over",
				nameOf(d), d.Spec.Template.Spec.Volumes)
		}
		return d
	}
	t.Error("the overlay has no Deployment tenancy-manager")
	return nil
}

// checkExternalSecrets: the Deployments use exactly the Secrets that the docs tell users to create
// and, with cert-manager, the one it writes, so a renamed Secret cannot slip by unnoticed.
func (w *wiring) checkExternalSecrets(t *testing.T) {
	var used []string
	for _, d := range w.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, env := range c.Env {
				if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil {
					used = append(used, env.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				used = append(used, v.Secret.SecretName)
			}
		}
	}
	slices.Sort(used)
	want := slices.Clone(userSecrets)
	if _, ok := w.certificate(t); ok {
		want = append(want, certManagerSecrets...)
	}
	slices.Sort(want)
	if !slices.Equal(slices.Compact(used), want) {
		t.Errorf("the Deployments use the Secrets %v, want %v (docs/deployment.md names them)", slices.Compact(used), want)
	}
	docs, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range userSecrets {
		if !strings.Contains(string(docs), name) {
			t.Errorf("docs/deployment.md does not tell users to create the Secret %s", name)
		}
	}
}
