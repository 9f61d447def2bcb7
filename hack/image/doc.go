// Command image builds and pushes the container images of the manager and authd without Docker
// or a registry's base image, through internal/ociimage; it is what `make image` and
// `make image-push` run.
//
//	go run ./hack/image build --version v0.1.0 --registry ghcr.io/tenancy-dev --out bin/images
//	go run ./hack/image push  --version v0.1.0 --registry ghcr.io/tenancy-dev --out bin/images
//
// build compiles ./cmd/manager and ./cmd/authd for linux/amd64 and linux/arm64 (static, version
// stamped), and writes per image an OCI layout (bin/images/tenancy-manager/, the image index named
// by the version) and a docker-archive of the host's platform (--archive-platform)
// (bin/images/tenancy-manager-v0.1.0.tar, tagged <registry>/tenancy-manager:<version>, which
// hack/release publishes), then reads both back and validates them. SOURCE_DATE_EPOCH sets every timestamp (default: the Unix
// epoch), so the same sources give the same digests. push sends the layouts' image indexes to
// <registry>/<image>:<version>, with the credentials of ~/.docker/config.json.
package main
