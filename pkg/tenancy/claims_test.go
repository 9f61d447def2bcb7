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
	person := &Claims{ClientID: SessionClientID}
	person.Subject = "0b5c7c1e-9a43-4e47-9d0a-6f1f7c0d9a11"
	app := &Claims{ClientID: "reports.acme"}
	app.Subject = person.Subject
	key := &Claims{ClientID: "7CyhCEiZlAlo"}
	key.Subject = key.ClientID
	if person.IsAPIKey() || app.IsAPIKey() || !key.IsAPIKey() {
		t.Error("IsAPIKey tells API keys (sub is the client) from people, in authd's session or an application's")
	}
}
