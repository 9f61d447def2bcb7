package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ManagerUsername is the Kubernetes username the manager runs as in a cluster (its service
// account). The admission policies let it, and nobody else, bind namespaces to organizations;
// tests and `make dev` run the manager under this name too.
const ManagerUsername = "system:serviceaccount:tenancy-system:tenancy-manager"

// InstallPolicies creates (or updates) the ValidatingAdmissionPolicies of config/policy.
func InstallPolicies(ctx context.Context, c client.Client) error {
	return applyFile(ctx, c, filepath.Join(RepoRoot(), "config", "policy", "namespace_label_policy.yaml"))
}

// InstallManagerRBAC grants ManagerUsername exactly the ClusterRole that config/rbac ships
// (generated from the controllers' markers), so tests and `make dev` exercise it.
func InstallManagerRBAC(ctx context.Context, c client.Client) error {
	if err := applyFile(ctx, c, filepath.Join(RepoRoot(), "config", "rbac", "role.yaml")); err != nil {
		return err
	}
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1",
		"kind":       "ClusterRoleBinding",
		"metadata":   map[string]any{"name": "manager-rolebinding"},
		"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "manager-role"},
		"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ManagerUsername}},
	}}
	return apply(ctx, c, binding)
}

// AuthdUsername is the Kubernetes username authd runs as in a cluster (its service account); the
// webhooks treat it as the operator's own.
const AuthdUsername = "system:serviceaccount:tenancy-system:tenancy-authd"

// InstallAuthdRBAC grants AuthdUsername the roles of config/authd/role.yaml, with the
// signing-keys Role in operatorNamespace.
func InstallAuthdRBAC(ctx context.Context, c client.Client, operatorNamespace string) error {
	objects, err := readObjects(filepath.Join(RepoRoot(), "config", "authd", "role.yaml"))
	if err != nil {
		return err
	}
	subjects := []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AuthdUsername}}
	for _, obj := range objects {
		if obj.GetNamespace() != "" {
			obj.SetNamespace(operatorNamespace)
		}
		if err := apply(ctx, c, obj); err != nil {
			return err
		}
		binding := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       obj.GetKind() + "Binding",
			"metadata":   map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()},
			"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": obj.GetKind(), "name": obj.GetName()},
			"subjects":   subjects,
		}}
		if obj.GetNamespace() == "" {
			unstructured.RemoveNestedField(binding.Object, "metadata", "namespace")
		}
		if err := apply(ctx, c, binding); err != nil {
			return err
		}
	}
	return nil
}

// AuthdUser adds authd's identity to the control plane: AuthdUsername, with no group.
func AuthdUser(env *envtest.Environment) (*envtest.AuthenticatedUser, error) {
	return env.AddUser(envtest.User{Name: AuthdUsername}, nil)
}

// applyFile creates or updates every object of a multi-document YAML file.
func applyFile(ctx context.Context, c client.Client, path string) error {
	objects, err := readObjects(path)
	if err != nil {
		return err
	}
	for _, obj := range objects {
		if err := apply(ctx, c, obj); err != nil {
			return err
		}
	}
	return nil
}

// readObjects decodes every object of a multi-document YAML file.
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objects []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		err := decoder.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(obj.Object) > 0 {
			objects = append(objects, obj)
		}
	}
}

func apply(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	err := c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		existing := &unstructured.Unstructured{}
		existing.SetGroupVersionKind(obj.GroupVersionKind())
		if err = c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err == nil {
			obj.SetResourceVersion(existing.GetResourceVersion())
			err = c.Update(ctx, obj)
		}
	}
	if err != nil {
		return fmt.Errorf("installing %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// ManagerUser adds the manager's identity to the control plane: ManagerUsername, with no group,
// so that only InstallManagerRBAC's ClusterRole authorizes it.
func ManagerUser(env *envtest.Environment) (*envtest.AuthenticatedUser, error) {
	return env.AddUser(envtest.User{Name: ManagerUsername}, nil)
}
