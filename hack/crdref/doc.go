// Command crdref writes docs/reference.md, the reference of the tenancy custom resources, from the
// CRDs that controller-gen generates into config/crd/bases: every field with its type, default,
// validations and description, and the columns of `kubectl get`. The CRDs come from the Go markers,
// so the page cannot drift from the types: `make manifests` regenerates it and
// hack/verify-generated.sh fails when the committed page is stale.
package main
