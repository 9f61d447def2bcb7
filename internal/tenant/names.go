package tenant

import (
	"slices"
	"strings"

	"github.com/tenancy-dev/tenancy/internal/db"
)

// Username is the Kubernetes username of a tenancy user: the cluster's prefix for
// OIDC usernames and the normalised email. The operator's RoleBindings name members by it, and
// authd impersonates members by it, so both must make it the same way.
func Username(prefix, email string) string { return prefix + db.NormalizeEmail(email) }

// SplitList reads a comma-separated flag such as --platform-admin-users, which the manager and
// authd take from the same setting: blanks and empty items are dropped.
func SplitList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// IsPlatformAdmin reports whether the Kubernetes user username, a member of groups, is one of
// the platform admins that --platform-admin-users and --platform-admin-groups name: the webhooks
// and authd's admin API decide it alike.
func IsPlatformAdmin(username string, groups, adminUsers, adminGroups []string) bool {
	return slices.Contains(adminUsers, username) ||
		slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(adminGroups, g) })
}
