// Package operator wires the manager's parts into a controller-runtime manager: the database as
// a runnable, the cache indexes, the admission webhooks, the controllers and the signing-key
// rotator. cmd/manager and the tests (internal/testenv) both call Setup, so that the tests run the
// wiring that ships; each caller keeps what is its own (flags, probes, certificates).
package operator
