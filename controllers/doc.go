// Package controllers holds one reconciler per tenancy kind, which turns the custom resources
// into PostgreSQL rows, Secrets and RBAC. Every reconciler shares one frame (lifecycle): fetch the
// object, handle the finalizer, run the kind's phases or its clean-up, and write the outcome once
// as kstatus conditions (Ready, Reconciling, Stalled), logged at V(1).
package controllers
