package webhooks

import (
	"fmt"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var rowIDPath = field.NewPath("metadata", "annotations").Key(tenancyv1.RowIDAnnotation)

// choosingRowID lets only a named platform admin set or change tenancy.dev/row-id on an
// Organization or a Project of kind (old is nil on create; rowID is the stored object's status.id,
// "" while it has no row), whatever RBAC allows: the id decides which rows already in the tenant
// tables the object reaches, such as those kept from a deleted organization. The operator's
// service accounts never choose one. Applying the same value again (a GitOps re-sync) and removing
// it choose nothing, so anyone may; and once the row exists, its id is fixed for everyone.
func choosingRowID(who requester, kind string, old, obj client.Object, rowID string) field.ErrorList {
	value, set := obj.GetAnnotations()[tenancyv1.RowIDAnnotation]
	if !set {
		return nil
	}
	id, err := uuid.Parse(value)
	if err != nil {
		return field.ErrorList{field.Invalid(rowIDPath, value, fmt.Sprintf("must be a UUID: %v", err))}
	}
	if old != nil && old.GetAnnotations()[tenancyv1.RowIDAnnotation] == value {
		return nil
	}
	if rowID != "" && id.String() != rowID {
		return field.ErrorList{field.Invalid(rowIDPath, value, fmt.Sprintf(
			"is immutable once the %s has its row: the row's id is %s, and a row's id never changes", kind, rowID))}
	}
	if who.namedAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(rowIDPath, fmt.Sprintf(
		"%s is not a platform admin: only a platform admin may choose the row id, which decides the rows of the tenant tables that this %s reaches",
		who.name(), kind))}
}
