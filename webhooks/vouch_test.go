package webhooks

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func TestVouching(t *testing.T) {
	membership := func(annotation string) *tenancyv1.Membership {
		m := &tenancyv1.Membership{Spec: tenancyv1.MembershipSpec{User: "cfo@example.com"}}
		if annotation != "" {
			m.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{tenancyv1.EmailVerifiedAnnotation: annotation}}
		}
		return m
	}
	admin := requester{username: "root", namedAdmin: true, platformAdmin: true}
	authd := requester{username: "system:serviceaccount:tenancy-system:tenancy-authd", operator: true, platformAdmin: true}
	owner := requester{username: "owner@example.com", email: "owner@example.com"}
	for _, tc := range []struct {
		reason   string
		who      requester
		old, new *tenancyv1.Membership
		want     string // a substring of the refusal, "" when admitted
	}{
		{reason: "a platform admin vouches on create", who: admin, new: membership("true")},
		{reason: "a platform admin vouches on update", who: admin, old: membership(""), new: membership("true")},
		{reason: "an Owner may not vouch on create", who: owner, new: membership("true"), want: "only a platform admin may vouch"},
		{reason: "an Owner may not add it later", who: owner, old: membership(""), new: membership("true"), want: "Forbidden"},
		{reason: "authd's own account never vouches", who: authd, new: membership("true"), want: "not a platform admin"},
		{reason: "an Owner changes other things of a vouched membership", who: owner, old: membership("true"), new: membership("true")},
		{reason: "anyone removes it", who: owner, old: membership("true"), new: membership("")},
		{reason: "no annotation, nothing to decide", who: owner, new: membership("")},
		{reason: "only the value true", who: admin, new: membership("yes"), want: `supported values: "true"`},
	} {
		errs := vouching(tc.who, tc.old, tc.new)
		got := errs.ToAggregate()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: refused: %v", tc.reason, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%s: got %v, want a refusal with %q", tc.reason, got, tc.want)
		case tc.want != "" && errs[0].Field != "metadata.annotations[tenancy.dev/email-verified]":
			t.Errorf("%s: refusal names %s", tc.reason, errs[0].Field)
		}
	}
}
