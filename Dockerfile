# syntax=docker/dockerfile:1
#
# The images of the manager and authd, for those who build with Docker:
#
#   docker build --target manager --build-arg VERSION=v0.1.0 -t ghcr.io/tenancy-dev/tenancy-manager:v0.1.0 .
#   docker build --target authd   --build-arg VERSION=v0.1.0 -t ghcr.io/tenancy-dev/tenancy-authd:v0.1.0 .
#
# `make image` builds the same images without Docker (internal/ociimage, hack/image): a scratch
# image holding /etc/passwd and /etc/group (root, nonroot 65532), /home/nonroot, /tmp, Mozilla's CA
# bundle, the time zones and the static binary, run as 65532:65532, no shell. The test of
# internal/ociimage checks that this file says the same: the base, the user, the entrypoints, the
# version stamp, the labels, passwd and group.

ARG GO_VERSION=1.26.8

# The binaries, compiled on the build machine's platform for the target's.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=devel
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/tenancy-dev/tenancy/internal/version.Version=${VERSION}" \
    -o /out/ ./cmd/manager ./cmd/authd

# The files of the base: made in a Debian stage, copied into scratch with their modes and owners.
FROM golang:${GO_VERSION}-bookworm AS rootfs
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*
# Mozilla's set as Debian ships it, in name order; the time zones without links that leave the
# tree (localtime -> /etc/localtime).
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/home/nonroot /rootfs/tmp /rootfs/usr/share \
    && LC_ALL=C sh -c 'cat /usr/share/ca-certificates/mozilla/*.crt' > /rootfs/etc/ssl/certs/ca-certificates.crt \
    && cp -a /usr/share/zoneinfo /rootfs/usr/share/zoneinfo \
    && find /rootfs/usr/share/zoneinfo -lname '/*' -delete \
    && chmod 0755 /rootfs/etc /rootfs/etc/ssl /rootfs/etc/ssl/certs /rootfs/home /rootfs/usr /rootfs/usr/share \
    && chmod 0644 /rootfs/etc/ssl/certs/ca-certificates.crt \
    && chmod 1777 /rootfs/tmp \
    && chmod 0700 /rootfs/home/nonroot && chown 65532:65532 /rootfs/home/nonroot
COPY --chmod=0644 <<EOF /rootfs/etc/passwd
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
COPY --chmod=0644 <<EOF /rootfs/etc/group
root:x:0:
nonroot:x:65532:
EOF

FROM scratch AS base
# COPY --from keeps the owners the rootfs stage gave (root, and nonroot's home).
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /
USER 65532:65532
ARG VERSION=devel
ARG REVISION=
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/tenancy-dev/tenancy"

FROM base AS authd
COPY --from=build /out/authd /authd
LABEL org.opencontainers.image.title="tenancy-authd" \
      org.opencontainers.image.description="Tenancy's auth service: logins, sessions, API-key tokens, invitations and the JWKS."
ENTRYPOINT ["/authd"]

# The last stage, so that a plain `docker build .` builds the manager.
FROM base AS manager
COPY --from=build /out/manager /manager
LABEL org.opencontainers.image.title="tenancy-manager" \
      org.opencontainers.image.description="Tenancy's manager: the controllers and admission webhooks of the Tenancy operator."
ENTRYPOINT ["/manager"]
