package v1alpha1_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// The role ladder lives in three places that cannot import one another: the API types, the SDK
// that applications import (pkg/tenancy) and the database's enum, whose order is what has_role
// compares. A role spelled or ordered differently in one of them would grant or refuse silently.

func apiLadder() []string {
	var names []string
	for _, r := range tenancyv1.Roles() {
		names = append(names, string(r))
	}
	return names
}

func TestRoleLadderIsOrderedByRank(t *testing.T) {
	roles := tenancyv1.Roles()
	if len(roles) != 4 {
		t.Fatalf("Roles() = %v, want the four roles", roles)
	}
	for i, r := range roles {
		if r.Rank() != i+1 {
			t.Errorf("%s.Rank() = %d, want %d (its place on the ladder)", r, r.Rank(), i+1)
		}
	}
	if got := tenancyv1.Role("Superuser").Rank(); got != 0 {
		t.Errorf("an unknown role ranks %d, want 0", got)
	}
	roles[0] = "changed"
	if tenancyv1.Roles()[0] != tenancyv1.RoleViewer {
		t.Error("Roles() hands out the ladder itself: a caller changed it")
	}
}

func TestSDKAgreesWithTheAPIRoleLadder(t *testing.T) {
	sdk := []string{tenancy.RoleViewer, tenancy.RoleMember, tenancy.RoleAdmin, tenancy.RoleOwner}
	if !slices.Equal(sdk, apiLadder()) {
		t.Fatalf("pkg/tenancy's roles, lowest first, are %v; the API's are %v", sdk, apiLadder())
	}
	for _, has := range tenancyv1.Roles() {
		for _, min := range tenancyv1.Roles() {
			claims := &tenancy.Claims{Role: string(has)}
			if got, want := claims.HasRole(string(min)), has.AtLeast(min); got != want {
				t.Errorf("a %s token: HasRole(%s) = %t, but the API says AtLeast = %t", has, min, got, want)
			}
		}
	}
}

var createRoleEnum = regexp.MustCompile(`(?is)CREATE\s+TYPE\s+tenancy\.role\s+AS\s+ENUM\s*\(([^)]*)\)`)

func TestDatabaseRoleEnumAgreesWithTheAPIRoleLadder(t *testing.T) {
	migrations, err := db.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var enum []string
	for _, m := range migrations {
		if regexp.MustCompile(`(?i)ALTER\s+TYPE\s+tenancy\.role\b`).MatchString(m.SQL) {
			t.Fatalf("migration %04d_%s alters tenancy.role: teach this test to apply the change", m.Version, m.Name)
		}
		match := createRoleEnum.FindStringSubmatch(m.SQL)
		if match == nil {
			continue
		}
		if enum != nil {
			t.Fatalf("migration %04d_%s creates tenancy.role a second time", m.Version, m.Name)
		}
		for value := range strings.SplitSeq(match[1], ",") {
			enum = append(enum, strings.Trim(strings.TrimSpace(value), "'"))
		}
	}
	if enum == nil {
		t.Fatal("no migration creates the type tenancy.role")
	}
	if !slices.Equal(enum, apiLadder()) {
		t.Fatalf("tenancy.role's values, in enum order, are %v; the API's roles, lowest first, are %v", enum, apiLadder())
	}
}
