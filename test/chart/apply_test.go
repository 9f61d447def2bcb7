package chart_test

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// fieldOwner is the field manager of the dry-run applies.
const fieldOwner = "tenancy-chart-test"

// TestRenderedObjectsApplyToAnAPIServer: the API server takes every object the chart renders
// (its CRDs and templates), with default and non-default values, without a refusal or a warning.
// The release namespace is created first, labelled for the restricted Pod Security Standard as
// NOTES.txt tells users to, so that Pod Security admission warns about pods it would refuse.
func TestRenderedObjectsApplyToAnAPIServer(t *testing.T) {
	needsControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(controlPlane.Config)
	cfg.WarningHandlerWithContext = warnings
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	crds := crdObjects(t)

	for _, tc := range []struct {
		name      string
		values    map[string]any
		namespace string
	}{
		{name: "default values", values: nil, namespace: defaultNamespace},
		{name: "selfSigned", values: parseValues(t, "webhookCertificates: {mode: selfSigned}"), namespace: defaultNamespace},
		{name: "serviceMonitor on", values: parseValues(t, "serviceMonitor: {enabled: true}"), namespace: defaultNamespace},
		{name: "testdata/nondefault-values.yaml", values: valuesFile(t, "nondefault-values.yaml"), namespace: nondefaultNamespace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A dry run creates nothing, so the namespace must exist, as the user creates it.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name:   tc.namespace,
				Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
			}}
			if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("creating namespace %s: %v", tc.namespace, err)
			}
			objects := append(append([]*unstructured.Unstructured{}, crds...), render(t, tc.values, tc.namespace).objects...)
			for _, obj := range objects {
				namespaced, err := c.IsObjectNamespaced(obj)
				if err != nil {
					t.Errorf("%s %s: the API server does not know the kind: %v", obj.GetKind(), nameOf(obj), err)
					continue
				}
				if namespaced != (obj.GetNamespace() != "") {
					t.Errorf("%s %s: namespaced is %v, but the object's namespace is %q", obj.GetKind(), nameOf(obj), namespaced, obj.GetNamespace())
				}
				warnings.reset()
				err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
					client.FieldOwner(fieldOwner), client.ForceOwnership, client.DryRunAll)
				if err != nil {
					t.Errorf("%s %s: the API server refuses it: %v", obj.GetKind(), nameOf(obj), err)
				}
				for _, w := range warnings.take() {
					t.Errorf("%s %s: the API server warns: %s", obj.GetKind(), nameOf(obj), w)
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
