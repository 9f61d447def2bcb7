#!/usr/bin/env bash
# Builds kube-apiserver, etcd, kubectl and kube-controller-manager for one Kubernetes version from
# the Go module proxy (there is no download site and no Docker here) into a cache outside the
# repository, and prints the directory to use as KUBEBUILDER_ASSETS.
#
# Usage: hack/setup-envtest.sh            # prints the assets directory
# Env:   K8S_VERSION (default 1.37.2), TENANCY_CACHE (default ~/.cache/tenancy)
set -euo pipefail

k8s_version="${K8S_VERSION:-1.37.2}"
staging_version="v0.${k8s_version#1.}"
etcd_module="go.etcd.io/etcd/server/v3"
cache="${TENANCY_CACHE:-$HOME/.cache/tenancy}"
assets="$cache/envtest/$k8s_version"
binaries=(kube-apiserver etcd kubectl kube-controller-manager)

complete() {
  for b in "${binaries[@]}"; do
    [ -x "$assets/$b" ] || return 1
  done
}

if complete; then
  echo "$assets"
  exit 0
fi

log() { echo "setup-envtest: $*" >&2; }

mkdir -p "$cache"
# One builder at a time: parallel `make test` and `make dev` must not race on the same cache.
exec 9>"$cache/envtest.lock"
flock 9
if complete; then
  echo "$assets"
  exit 0
fi

work="$(mktemp -d "$cache/envtest-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

log "building Kubernetes v$k8s_version binaries from the Go module proxy (several minutes the first time)"
export GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
go mod init tenancy.dev/envtest-build >/dev/null 2>&1
go mod download -json "k8s.io/kubernetes@v$k8s_version" >"$work/k8s.json"
k8s_gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' "$work/k8s.json")"
[ -f "$k8s_gomod" ] || { log "could not find go.mod of k8s.io/kubernetes@v$k8s_version"; exit 1; }

# k8s.io/kubernetes replaces each staging module with ./staging/...; a consumer must pin them instead.
staging_modules="$(awk '$1 == "k8s.io/kubernetes" { next } /=> \.\/staging\// { print ($1 == "replace" ? $2 : $1) }' "$k8s_gomod" | sort -u)"
[ -n "$staging_modules" ] || { log "no staging replaces found in $k8s_gomod"; exit 1; }

{
  echo "require k8s.io/kubernetes v$k8s_version"
  for m in $staging_modules; do
    echo "replace $m => $m $staging_version"
  done
} >>go.mod

cat >tools.go <<EOF
//go:build tools

package tools

import (
	_ "$etcd_module"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }

mkdir -p "$work/bin"
build() {
  local name="$1" pkg="$2"
  log "go build $pkg"
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$work/bin/$name" "$pkg"
}
build etcd "$etcd_module"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl

mkdir -p "$(dirname "$assets")"
rm -rf "$assets.tmp"
mv "$work/bin" "$assets.tmp"
rm -rf "$assets"
mv "$assets.tmp" "$assets"
log "binaries ready in $assets"
echo "$assets"
