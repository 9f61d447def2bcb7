package chart_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// nondefaultNamespace is the release namespace of testdata/nondefault-values.yaml.
const nondefaultNamespace = "platform-tenancy"

// TestNonDefaultValues: every value of testdata/nondefault-values.yaml shows where it should,
// and the release namespace reaches the webhooks, the admission policy and the certificate.
func TestNonDefaultValues(t *testing.T) {
	r := render(t, valuesFile(t, "nondefault-values.yaml"), nondefaultNamespace)
	objects := r.objects

	t.Run("every object", func(t *testing.T) {
		for _, obj := range objects {
			if obj.GetLabels()["example.org/team"] != "platform" || obj.GetAnnotations()["example.org/owner"] != "platform-team" {
				t.Errorf("%s %s: labels %v, annotations %v; want commonLabels and commonAnnotations",
					obj.GetKind(), obj.GetName(), obj.GetLabels(), obj.GetAnnotations())
			}
			if obj.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" || obj.GetLabels()["app.kubernetes.io/instance"] != releaseName {
				t.Errorf("%s %s: labels %v; want Helm's", obj.GetKind(), obj.GetName(), obj.GetLabels())
			}
			if ns := obj.GetNamespace(); ns != "" && ns != nondefaultNamespace {
				t.Errorf("%s %s: in namespace %s, want the release namespace %s", obj.GetKind(), obj.GetName(), ns, nondefaultNamespace)
			}
		}
	})

	t.Run("manager", func(t *testing.T) {
		d := convert[appsv1.Deployment](t, find(t, objects, "Deployment", "tenancy-manager"))
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		check(t, "replicas", *d.Spec.Replicas, int32(3))
		check(t, "image", c.Image, "registry.example.org/mirror/tenancy-manager:v0.1.0-rc.1")
		check(t, "imagePullPolicy", c.ImagePullPolicy, corev1.PullAlways)
		check(t, "imagePullSecrets", pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}})
		check(t, "resources", c.Resources, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		})
		check(t, "the last argument", c.Args[len(c.Args)-1], "--resync-period=5m")
		check(t, "the database Secret", secretOf(c, "TENANCY_DATABASE_URL"), corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "manager-db"}, Key: "dsn"})
		check(t, "the SMTP Secret", secretOf(c, "TENANCY_SMTP_URL"), corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "smtp-relay"}, Key: "smtp-url"})
		if !slices.Contains(c.Args, "--mail-from=Acme Platform <no-reply@example.org>") {
			t.Errorf("args %v; want --mail-from", c.Args)
		}
		check(t, "priorityClassName", pod.PriorityClassName, "platform-critical")
		check(t, "nodeSelector", pod.NodeSelector, map[string]string{"kubernetes.io/os": "linux"})
		check(t, "tolerations", pod.Tolerations, []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "platform", Effect: corev1.TaintEffectNoSchedule}})
		if a := pod.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			t.Errorf("affinity %+v; want the values' nodeAffinity", a)
		}
		if tsc := pod.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].TopologyKey != "topology.kubernetes.io/zone" {
			t.Errorf("topologySpreadConstraints %+v; want the values' one over zones", tsc)
		}
		checkPodMetadata(t, d, "manager", "control-plane")
		if !slices.Contains(c.Args, "--webhook-cert-dir=/var/run/tenancy/webhook-certs") || len(pod.Volumes) != 1 {
			t.Errorf("args %v, volumes %v; want cert-manager's certificate mounted", c.Args, pod.Volumes)
		}
		find(t, objects, "PodDisruptionBudget", "tenancy-manager")
	})

	t.Run("authd", func(t *testing.T) {
		d := convert[appsv1.Deployment](t, find(t, objects, "Deployment", "tenancy-authd"))
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		check(t, "replicas", *d.Spec.Replicas, int32(1))
		check(t, "image", c.Image, "registry.example.org/mirror/tenancy-authd:v0.1.0-rc.1")
		check(t, "imagePullPolicy", c.ImagePullPolicy, corev1.PullIfNotPresent)
		check(t, "imagePullSecrets", pod.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}})
		check(t, "resources", c.Resources, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
		})
		check(t, "the arguments after the settings", c.Args[slices.Index(c.Args, "--platform-admin-users=$(PLATFORM_ADMIN_USERS)")+1:],
			[]string{"--mail-from=Acme Platform <no-reply@example.org>", "--allow-signup", "--trusted-proxies=10.42.0.0/16,fd00:10:42::/56", "--login-address-burst=20"})
		check(t, "the database Secret", secretOf(c, "TENANCY_DATABASE_URL"), corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "authd-db"}, Key: "dsn"})
		check(t, "the SMTP Secret", secretOf(c, "TENANCY_SMTP_URL"), corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "smtp-relay"}, Key: "smtp-url"})
		check(t, "nodeSelector", pod.NodeSelector, map[string]string{"example.org/pool": "edge"})
		check(t, "tolerations", pod.Tolerations, []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}})
		if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("affinity %+v; want the values' podAntiAffinity", a)
		}
		check(t, "topologySpreadConstraints", len(pod.TopologySpreadConstraints), 0)
		checkPodMetadata(t, d, "authd", "edge")
		if has(objects, "PodDisruptionBudget", "tenancy-authd") {
			t.Error("a PodDisruptionBudget with minAvailable 1 for a single replica would block every node drain")
		}
	})

	t.Run("settings", func(t *testing.T) {
		cm := convert[corev1.ConfigMap](t, find(t, objects, "ConfigMap", "tenancy-settings"))
		check(t, "data", cm.Data, map[string]string{
			"public-url":           "https://login.example.org/tenancy",
			"username-prefix":      "oidc:",
			"platform-admin-users": "oidc:root@example.org,oidc:ops@example.org",
		})
	})

	t.Run("certificate", func(t *testing.T) {
		if has(objects, "Issuer", "tenancy-selfsigned-issuer") {
			t.Error("the chart renders its self-signed Issuer although issuerRef names another")
		}
		cert := find(t, objects, "Certificate", "tenancy-serving-cert")
		issuerRef, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
		check(t, "issuerRef", issuerRef, map[string]string{"name": "corporate-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		check(t, "dnsNames", dnsNames, []string{"tenancy-webhook-service.platform-tenancy.svc", "tenancy-webhook-service.platform-tenancy.svc.cluster.local"})
	})

	t.Run("webhooks", func(t *testing.T) {
		for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
			for _, obj := range objects {
				if obj.GetKind() != kind {
					continue
				}
				check(t, kind+" inject-ca-from", obj.GetAnnotations()["cert-manager.io/inject-ca-from"], "platform-tenancy/tenancy-serving-cert")
				hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
				for _, h := range hooks {
					hook := h.(map[string]any)
					ns, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "namespace")
					check(t, kind+" "+hook["name"].(string)+" service namespace", ns, nondefaultNamespace)
					expressions, found, _ := unstructured.NestedSlice(hook, "namespaceSelector", "matchExpressions")
					if found {
						values, _, _ := unstructured.NestedStringSlice(expressions[0].(map[string]any), "values")
						check(t, kind+" "+hook["name"].(string)+" namespaces left alone", values, []string{"kube-system", nondefaultNamespace})
					}
				}
			}
		}
		policy := find(t, objects, "ValidatingAdmissionPolicy", "tenancy-namespace-organization-label")
		conditions, _, _ := unstructured.NestedSlice(policy.Object, "spec", "matchConditions")
		check(t, "the policy's not-the-operator condition", conditions[1].(map[string]any)["expression"],
			"request.userInfo.username != 'system:serviceaccount:platform-tenancy:tenancy-manager'")
		for _, binding := range []string{"tenancy-manager-rolebinding", "tenancy-authd-rolebinding"} {
			subjects, _, _ := unstructured.NestedSlice(find(t, objects, "ClusterRoleBinding", binding).Object, "subjects")
			check(t, binding+" subject namespace", subjects[0].(map[string]any)["namespace"], nondefaultNamespace)
		}
	})

	t.Run("networkPolicy off", func(t *testing.T) {
		for _, obj := range objects {
			if obj.GetKind() == "NetworkPolicy" {
				t.Errorf("NetworkPolicy %s rendered with networkPolicy.enabled false", obj.GetName())
			}
		}
	})

	t.Run("serviceMonitor on", func(t *testing.T) {
		for _, name := range []string{"tenancy-manager-metrics", "tenancy-authd-metrics"} {
			monitor := find(t, objects, "ServiceMonitor", name)
			check(t, name+" release label", monitor.GetLabels()["release"], "prometheus")
		}
	})

	t.Run("NOTES.txt", func(t *testing.T) {
		for _, want := range []string{
			"kubectl label namespace platform-tenancy pod-security.kubernetes.io/enforce=restricted",
			"kubectl -n platform-tenancy get secret manager-db authd-db",
			"--from-literal=dsn=",
			"kubectl -n platform-tenancy rollout status deploy/tenancy-manager deploy/tenancy-authd",
			"Service tenancy-authd, port 80",
			"kubectl api-resources --api-group=tenancy.dev",
		} {
			if !strings.Contains(r.notes, want) {
				t.Errorf("NOTES.txt does not say %q:\n%s", want, r.notes)
			}
		}
	})
}

// TestDefaultValues: what the comparison with config/ cannot show. Signup stays off and no proxy
// is trusted unless asked, the pods carry a checksum of the settings that changes with them (so
// that `helm upgrade` with other settings rolls the pods), and NOTES.txt says what to do next.
func TestDefaultValues(t *testing.T) {
	defaults := render(t, nil, defaultNamespace)
	authd := convert[appsv1.Deployment](t, find(t, defaults.objects, "Deployment", "tenancy-authd"))
	for _, arg := range authd.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(arg, "--allow-signup") || strings.HasPrefix(arg, "--trusted-proxies") {
			t.Errorf("authd has %s with default values", arg)
		}
	}
	signup := render(t, parseValues(t, "authd: {allowSignup: true}"), defaultNamespace)
	if args := convert[appsv1.Deployment](t, find(t, signup.objects, "Deployment", "tenancy-authd")).Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--allow-signup") {
		t.Errorf("authd.allowSignup true: args %v, want --allow-signup", args)
	}

	same := render(t, parseValues(t, "manager: {replicas: 3}"), defaultNamespace)
	changed := render(t, parseValues(t, "publicURL: https://login.example.org"), defaultNamespace)
	for _, name := range []string{"tenancy-manager", "tenancy-authd"} {
		checksum := func(r rendered) string {
			return convert[appsv1.Deployment](t, find(t, r.objects, "Deployment", name)).Spec.Template.Annotations[checksumAnnotation]
		}
		if checksum(defaults) == "" {
			t.Errorf("Deployment %s: no %s annotation on the pods", name, checksumAnnotation)
		}
		if checksum(same) != checksum(defaults) {
			t.Errorf("Deployment %s: the settings' checksum changes with values that are no settings", name)
		}
		if checksum(changed) == checksum(defaults) {
			t.Errorf("Deployment %s: the settings' checksum stays when publicURL changes; the pods would keep the old URL", name)
		}
	}

	for _, want := range []string{
		"kubectl label namespace tenancy-system pod-security.kubernetes.io/enforce=restricted",
		"kubectl -n tenancy-system get secret tenancy-database tenancy-authd-database",
		"kubectl -n tenancy-system rollout status deploy/tenancy-manager deploy/tenancy-authd",
		"cert-manager has written the Secret webhook-server-cert",
		"publicURL is still the example address",
		"authd.trustedProxies",
		"kubectl api-resources --api-group=tenancy.dev",
	} {
		if !strings.Contains(defaults.notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, defaults.notes)
		}
	}
}

// checkPodMetadata: the pods carry their selector's labels, the component's podLabels (tier) and
// the commonLabels; the component's podAnnotations and the commonAnnotations.
func checkPodMetadata(t *testing.T, d *appsv1.Deployment, component, tier string) {
	t.Helper()
	check(t, "selector", d.Spec.Selector.MatchLabels, map[string]string{"app.kubernetes.io/name": "tenancy", "app.kubernetes.io/component": component})
	check(t, "pod labels", d.Spec.Template.Labels, map[string]string{
		"app.kubernetes.io/name": "tenancy", "app.kubernetes.io/component": component,
		"example.org/tier": tier, "example.org/team": "platform",
	})
	annotations := d.Spec.Template.Annotations
	if annotations["example.org/note"] != component || annotations["example.org/owner"] != "platform-team" || annotations[checksumAnnotation] == "" {
		t.Errorf("pod annotations %v; want podAnnotations, commonAnnotations and the settings' checksum", annotations)
	}
}

// check reports got unless it equals want.
func check[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if diff := cmp.Diff(want, got, quantities); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// quantities compares resource quantities by value, as the API server does.
var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// secretOf is the Secret key that the container's env variable name comes from.
func secretOf(c corev1.Container, name string) corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return *e.ValueFrom.SecretKeyRef
		}
	}
	return corev1.SecretKeySelector{}
}

// find returns the object of that kind and name, failing t if there is none.
func find(t *testing.T, objects []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, obj := range objects {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	t.Fatalf("the chart renders no %s %s", kind, name)
	return nil
}

func has(objects []*unstructured.Unstructured, kind, name string) bool {
	return slices.ContainsFunc(objects, func(obj *unstructured.Unstructured) bool {
		return obj.GetKind() == kind && obj.GetName() == name
	})
}

// convert turns obj into its typed form, refusing fields the type does not have.
func convert[T any](t *testing.T, obj *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), nameOf(obj), err)
	}
	return out
}
