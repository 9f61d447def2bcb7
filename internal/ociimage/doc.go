// Package ociimage builds the container images of the manager and authd without Docker or a base
// image from a registry: one OCI image index per binary (linux/amd64 and linux/arm64), each image
// a base layer made here (root and nonroot in /etc/passwd and /etc/group, /home/nonroot, /tmp,
// Mozilla's CA bundle and the time zones, no shell) and a layer holding the static binary, run as
// 65532:65532. Builds are reproducible: fixed mtimes, owners and entry order give the same digest
// for the same binaries. It also writes and reads the OCI layouts and docker-archive tarballs that
// `make image` leaves in bin/images, and pushes those layouts (`make image-push`). The Dockerfile
// at the repository's root builds the same images with Docker; a test keeps the two in step.
package ociimage
