package controllers

import (
	"errors"

	"github.com/google/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// wantedRowID is the id that an Organization's or Project's row is upserted with: status.id once
// the object has one, so that a row deleted by hand comes back with it; before that the UUID that
// tenancy.dev/row-id asks for, if any. An existing row keeps its id whatever the annotation says,
// and the status follows the row, so the annotation never re-keys anything.
func wantedRowID(obj client.Object, statusID string) (string, error) {
	if statusID != "" {
		return statusID, nil
	}
	value, set := obj.GetAnnotations()[tenancyv1.RowIDAnnotation]
	if !set {
		return "", nil
	}
	id, err := uuid.Parse(value)
	if err != nil {
		return "", stalled(tenancyv1.InvalidRowIDReason,
			"Annotation %s is not a UUID (%v): correct it, or remove it for a new id", tenancyv1.RowIDAnnotation, err)
	}
	return id.String(), nil
}

// rowIDInUse turns the database's refusal of an id that another row has into Stalled: retrying
// cannot help until that row goes or the annotation changes (which wakes the object).
func rowIDInUse(err error) error {
	var inUse *db.RowIDInUseError
	if !errors.As(err, &inUse) {
		return err
	}
	return stalled(tenancyv1.RowIDInUseReason,
		"Row id %s is already the id of %s: a platform admin may set another %s, or remove it for a new id",
		inUse.ID, inUse.Holder, tenancyv1.RowIDAnnotation)
}
