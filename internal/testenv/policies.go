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
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "policy", "namespace_label_policy.yaml"))
	if err != nil {
		return err
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := decoder.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decoding config/policy: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		err = c.Create(ctx, obj)
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
	}
}

// ManagerUser adds the manager's identity to the control plane: ManagerUsername, in
// system:masters (in a cluster, config/rbac grants it what it needs).
func ManagerUser(env *envtest.Environment) (*envtest.AuthenticatedUser, error) {
	return env.AddUser(envtest.User{Name: ManagerUsername, Groups: []string{"system:masters"}}, nil)
}
