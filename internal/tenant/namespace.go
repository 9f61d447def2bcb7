package tenant

import "strings"

// ReservedNamespace reports whether a namespace belongs to the cluster or the operator, so that no
// organization may own it.
func ReservedNamespace(name, operatorNamespace string) bool {
	return name == operatorNamespace || name == "default" || strings.HasPrefix(name, "kube-")
}
