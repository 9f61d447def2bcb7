#!/usr/bin/env bash
# Regenerates CRDs (config/crd and charts/tenancy/crds), RBAC, webhook configurations, deepcopy and docs/reference.md into a scratch directory and fails when the committed files
# differ: generated files come only from `make manifests generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CONTROLLER_GEN:?set CONTROLLER_GEN to the controller-gen binary}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$CONTROLLER_GEN" rbac:roleName=manager-role crd webhook paths="./..." \
  output:crd:artifacts:config="$scratch/crd" output:rbac:artifacts:config="$scratch/rbac" \
  output:webhook:artifacts:config="$scratch/webhook"
"$CONTROLLER_GEN" object:headerFile="hack/boilerplate.go.txt" paths="./api/..." output:object:dir="$scratch/object"
go run ./hack/crdref --crds "$scratch/crd" --out "$scratch/reference.md"

stale=0
diff -ru config/crd/bases "$scratch/crd" || stale=1
diff -ru charts/tenancy/crds "$scratch/crd" || stale=1
diff -u config/rbac/role.yaml "$scratch/rbac/role.yaml" || stale=1
diff -u config/webhook/manifests.yaml "$scratch/webhook/manifests.yaml" || stale=1
diff -u api/v1alpha1/zz_generated.deepcopy.go "$scratch/object/zz_generated.deepcopy.go" || stale=1
diff -u docs/reference.md "$scratch/reference.md" || stale=1
if [ "$stale" -ne 0 ]; then
  echo "Generated files are stale: run 'make manifests generate' and commit the result." >&2
  exit 1
fi
