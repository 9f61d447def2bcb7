package tenant

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUsernameAndSplitList(t *testing.T) {
	if got := Username("oidc:", " Alice@Example.COM "); got != "oidc:alice@example.com" {
		t.Errorf("Username = %q, want the prefix and the normalised email", got)
	}
	if diff := cmp.Diff([]string{"root@example.com", "ops"}, SplitList(" root@example.com,, ops ,")); diff != "" {
		t.Errorf("SplitList drops blanks and empty items (-want +got):\n%s", diff)
	}
	if got := SplitList(""); got != nil {
		t.Errorf("SplitList(\"\") = %v, want none", got)
	}
}
