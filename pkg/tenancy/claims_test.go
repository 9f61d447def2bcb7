package tenancy

import (
	"slices"
	"testing"
)

func TestRolesAndPermissions(t *testing.T) {
	member := &Claims{Role: RoleMember, Scope: "data:read data:write"}
	for min, want := range map[string]bool{RoleViewer: true, RoleMember: true, RoleAdmin: false, RoleOwner: false, "Root": false, "": false} {
		if got := member.HasRole(min); got != want {
			t.Errorf("Member.HasRole(%q) = %t, want %t", min, got, want)
		}
	}
	if !member.HasPermission("data:write") || member.HasPermission("data") {
		t.Error("HasPermission matches whole scope entries only")
	}
	viewer, owner := Permissions(RoleViewer), Permissions(RoleOwner)
	if slices.Contains(viewer, "data:write") || !slices.Contains(owner, "data:write") || !slices.Contains(owner, "owners:write") {
		t.Errorf("each role adds to the one below it: viewer %v, owner %v", viewer, owner)
	}
	if len(Permissions("Root")) != 0 {
		t.Error("an unknown role grants nothing")
	}
	if (&Claims{ClientID: SessionClientID}).IsAPIKey() || !(&Claims{ClientID: "7CyhCEiZlAlo"}).IsAPIKey() {
		t.Error("IsAPIKey tells API keys from people by client_id")
	}
}
