package controllers

import (
	"context"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
)

// Store is everything the controllers need from the database.
type Store interface {
	OrganizationStore
	ProjectStore
}

// Settings are the knobs shared by every controller.
type Settings struct {
	// ResyncPeriod is how often a Ready object is reconciled again.
	ResyncPeriod time.Duration
	// Options tune workers and retry backoff; each controller gets a copy.
	Options controller.Options
}

// SetupWithManager registers the field indexes and every controller with mgr.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, store Store, s Settings) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := (&OrganizationReconciler{
		Client:       mgr.GetClient(),
		Store:        store,
		Recorder:     mgr.GetEventRecorder("tenancy-organization"),
		ResyncPeriod: s.ResyncPeriod,
		Options:      s.Options,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the organization controller: %w", err)
	}
	if err := (&ProjectReconciler{
		Client:       mgr.GetClient(),
		Store:        store,
		Recorder:     mgr.GetEventRecorder("tenancy-project"),
		ResyncPeriod: s.ResyncPeriod,
		Options:      s.Options,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the project controller: %w", err)
	}
	return nil
}
