package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// defaultMetadata gives a new object the operator's finalizer and records who created or
// changed obj.
func (a *admitter) defaultMetadata(ctx context.Context, obj client.Object) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return fmt.Errorf("reading the admission request: %w", err)
	}
	// The decoder also takes YAML, so a body such as " " decodes into an empty object; the
	// defaults would then be answered with a patch against a document that does not exist (500).
	if body := bytes.TrimSpace(req.Object.Raw); !json.Valid(body) || body[0] != '{' {
		return apierrors.NewBadRequest("the object is not a JSON document")
	}
	if req.Operation == admissionv1.Create {
		// Added here rather than by the controller, the finalizer costs no write of its own: at
		// scale that is one API write (and two webhook calls) fewer per object. The controllers
		// still add it to objects created while the webhook was not installed. The API server
		// records managed fields before it calls the webhooks, so no applier owns the finalizer
		// and a later server-side apply without it leaves it in place.
		controllerutil.AddFinalizer(obj, tenancyv1.Finalizer)
	}
	return a.stamp(ctx, obj)
}

// creating reports whether the admission request in ctx creates its object.
func creating(ctx context.Context) (bool, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the admission request: %w", err)
	}
	return req.Operation == admissionv1.Create, nil
}

// stamp records in tenancy.dev/last-changed-by who created or changed obj; the controllers copy
// it into audit_log. The operator's own writes (finalizers, authd's signup on a user's behalf)
// keep the value they carry.
func (a *admitter) stamp(ctx context.Context, obj client.Object) error {
	who, err := a.requesterOf(ctx)
	if err != nil || who.operator {
		return err
	}
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[tenancyv1.LastChangedByAnnotation] = who.username
	obj.SetAnnotations(annotations)
	return nil
}

// storedEmail trims and lower-cases a new email, but keeps the spelling already stored when an
// update only changes its case or spaces: spec.user is immutable, and a normalisation must not
// read as a change.
func storedEmail(ctx context.Context, user string) (string, error) {
	email := db.NormalizeEmail(user)
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the admission request: %w", err)
	}
	if req.Operation != admissionv1.Update {
		return email, nil
	}
	var old struct {
		Spec struct {
			User string `json:"user"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
		return "", fmt.Errorf("decoding the stored object: %w", err)
	}
	if db.NormalizeEmail(old.Spec.User) == email {
		return old.Spec.User, nil
	}
	return email, nil
}
