package testenv

import (
	"context"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// InstallLeaderElectionRBAC grants ManagerUsername config/rbac's leader-election Role in
// operatorNamespace, so that managers run with --leader-elect hold their Lease there.
func InstallLeaderElectionRBAC(ctx context.Context, c client.Client, operatorNamespace string) error {
	objects, err := readObjects(filepath.Join(RepoRoot(), "config", "rbac", "leader_election_role.yaml"))
	if err != nil {
		return err
	}
	for _, role := range objects {
		role.SetNamespace(operatorNamespace)
		if err := apply(ctx, c, role); err != nil {
			return err
		}
		binding := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       "RoleBinding",
			"metadata":   map[string]any{"name": role.GetName(), "namespace": operatorNamespace},
			"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.GetName()},
			"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ManagerUsername}},
		}}
		if err := apply(ctx, c, binding); err != nil {
			return err
		}
	}
	return nil
}
