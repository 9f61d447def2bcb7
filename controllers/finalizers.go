package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// addFinalizer makes sure the object cannot go before its rows are removed.
func addFinalizer(ctx context.Context, c client.Client, obj client.Object) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.AddFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// removeFinalizer lets the object go once its rows are removed.
func removeFinalizer(ctx context.Context, c client.Client, obj client.Object) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.RemoveFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// reportRowChange tells, through an Event, that a row was created, or was put back after someone
// changed or deleted it by hand (a write while the spec was already observed).
func reportRowChange(recorder events.EventRecorder, obj tenancyv1.Object, res db.UpsertResult) {
	status := obj.CommonStatusRef()
	switch {
	case !res.Changed:
	case status.ObservedGeneration == 0:
		recorder.Eventf(obj, nil, corev1.EventTypeNormal, "RowCreated", "UpsertRow", "Created database row %s", res.ID)
	case status.ObservedGeneration == obj.GetGeneration():
		recorder.Eventf(obj, nil, corev1.EventTypeWarning, "DriftRestored", "UpsertRow",
			"Database row %s was changed or deleted outside the operator and has been restored", res.ID)
	default:
		recorder.Eventf(obj, nil, corev1.EventTypeNormal, "RowUpdated", "UpsertRow", "Updated database row %s", res.ID)
	}
}
