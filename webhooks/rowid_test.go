package webhooks

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func TestChoosingRowID(t *testing.T) {
	const (
		id      = "0b9f3c4e-5a6d-4e7f-8a9b-0c1d2e3f4a5b"
		otherID = "1c0a4d5f-6b7e-4f80-9bac-1d2e3f4a5b6c"
	)
	organization := func(annotation string) *tenancyv1.Organization {
		org := &tenancyv1.Organization{}
		if annotation != "" {
			org.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{tenancyv1.RowIDAnnotation: annotation}}
		}
		return org
	}
	withRow := func(org *tenancyv1.Organization, rowID string) *tenancyv1.Organization {
		org.Status.ID = rowID
		return org
	}
	admin := requester{username: "root", namedAdmin: true, platformAdmin: true}
	manager := requester{username: "system:serviceaccount:tenancy-system:tenancy-manager", operator: true, platformAdmin: true}
	creator := requester{username: "olivia@example.com", email: "olivia@example.com"}
	for _, tc := range []struct {
		reason   string
		who      requester
		old, new *tenancyv1.Organization
		want     string // a substring of the refusal, "" when admitted
	}{
		{reason: "a platform admin chooses it on create", who: admin, new: organization(id)},
		{reason: "a platform admin adds it before the row exists", who: admin, old: organization(""), new: organization(id)},
		{reason: "a platform admin changes it before the row exists (another id after RowIDInUse)", who: admin, old: organization(id), new: organization(otherID)},
		{reason: "anyone else may not choose it on create", who: creator, new: organization(id),
			want: "olivia@example.com is not a platform admin: only a platform admin may choose the row id, which decides the rows of the tenant tables that this organization reaches"},
		{reason: "nor add it later", who: creator, old: organization(""), new: organization(id), want: "Forbidden"},
		{reason: "the operator's service accounts never choose one", who: manager, new: organization(id), want: "not a platform admin"},
		{reason: "anyone re-applies the same value", who: creator, old: withRow(organization(id), id), new: organization(id)},
		{reason: "anyone removes it", who: creator, old: withRow(organization(id), id), new: organization("")},
		{reason: "no annotation, nothing to decide", who: creator, new: organization("")},
		{reason: "a UUID only", who: admin, new: organization("acme-1"), want: `Invalid value: "acme-1": must be a UUID`},
		{reason: "not even empty", who: admin, new: organization(" "), want: "must be a UUID"},
		{reason: "immutable once the row exists, for platform admins too", who: admin, old: withRow(organization(id), id), new: organization(otherID),
			want: "is immutable once the organization has its row: the row's id is " + id},
		{reason: "not added with another id once the row exists", who: admin, old: withRow(organization(""), id), new: organization(otherID),
			want: "immutable"},
		{reason: "added with the row's own id by a platform admin", who: admin, old: withRow(organization(""), id), new: organization(strings.ToUpper(id))},
	} {
		var old client.Object // nil on create, not a nil *Organization
		rowID := ""
		if tc.old != nil {
			old, rowID = tc.old, tc.old.Status.ID
		}
		errs := choosingRowID(tc.who, "organization", old, tc.new, rowID)
		got := errs.ToAggregate()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: refused: %v", tc.reason, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%s: got %v, want a refusal with %q", tc.reason, got, tc.want)
		case tc.want != "" && errs[0].Field != "metadata.annotations[tenancy.dev/row-id]":
			t.Errorf("%s: refusal names %s", tc.reason, errs[0].Field)
		}
	}
}
