package webhooks

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var emailVerifiedPath = field.NewPath("metadata", "annotations").Key(tenancyv1.EmailVerifiedAnnotation)

// vouching lets only a named platform admin set or change tenancy.dev/email-verified on a
// Membership (old is nil on create): it makes the user verified, whose memberships everywhere are
// then Active without their own invitation. The operator's service accounts never vouch, and
// removing the annotation proves nothing and changes nothing, so anyone may.
func vouching(who requester, old, m *tenancyv1.Membership) field.ErrorList {
	value, set := m.Annotations[tenancyv1.EmailVerifiedAnnotation]
	if !set {
		return nil
	}
	if value != "true" {
		return field.ErrorList{field.NotSupported(emailVerifiedPath, value, []string{"true"})}
	}
	if old != nil && old.Annotations[tenancyv1.EmailVerifiedAnnotation] == value {
		return nil
	}
	if who.namedAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(emailVerifiedPath, fmt.Sprintf(
		"%s is not a platform admin: only a platform admin may vouch that %s belongs to the person who holds the account",
		who.name(), m.Spec.User))}
}
