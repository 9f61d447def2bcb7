package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// addFinalizer makes sure the object cannot go before its rows are removed.
func addFinalizer(ctx context.Context, c client.Client, obj client.Object) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.AddFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	// The optimistic lock keeps a stale copy from dropping a finalizer someone else just added.
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
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
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// lifecycle is the frame every tenancy reconciler shares: fetch, then either clean up and drop
// the finalizer, or add the finalizer and run the kind's phases; the status is patched once at
// the end, and only when it changed.
type lifecycle[T tenancyv1.Object] struct {
	client client.Client
	resync time.Duration
	// newObject returns an empty object of the kind.
	newObject func() T
	// reconcileNormal runs the kind's phases.
	reconcileNormal func(ctx context.Context, obj T) (ctrl.Result, error)
	// cleanUp removes what the object owns outside Kubernetes' garbage collection; the finalizer
	// goes once it succeeds.
	cleanUp func(ctx context.Context, obj T) error
}

func (l lifecycle[T]) reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := l.newObject()
	if err := l.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return l.reconcileDelete(ctx, obj)
	}
	if err := addFinalizer(ctx, l.client, obj); err != nil {
		return ctrl.Result{}, err
	}

	patcher := newStatusPatcher(obj)
	defer func() {
		// A bug must not read as success: report a panic as the reconcile's error.
		if p := recover(); p != nil {
			retErr = fmt.Errorf("reconciler panic: %v", p)
		}
		result, retErr = finishReconcile(obj, result, retErr, l.resync)
		retErr = errors.Join(retErr, patcher.patch(ctx, l.client, obj))
	}()
	return l.reconcileNormal(ctx, obj)
}

func (l lifecycle[T]) reconcileDelete(ctx context.Context, obj T) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, tenancyv1.Finalizer) {
		return ctrl.Result{}, nil
	}
	patcher := newStatusPatcher(obj)
	if err := l.cleanUp(ctx, obj); err != nil {
		result, err := finishReconcile(obj, ctrl.Result{}, err, l.resync)
		return result, errors.Join(err, patcher.patch(ctx, l.client, obj))
	}
	return ctrl.Result{}, removeFinalizer(ctx, l.client, obj)
}
