// Package testenv starts what integration tests need: a database of their own on the test
// PostgreSQL server, an envtest control plane with the tenancy CRDs, and the manager wired as
// cmd/manager wires it (StartManager), so that the suites test the code that ships.
package testenv
