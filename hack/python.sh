#!/usr/bin/env bash
# Prints the path of the Python interpreter for examples/notes-python and its test:
#   1. $TENANCY_PYTHON when set;
#   2. else Debian's /usr/bin/python3, after installing with apt-get the Debian package of each
#      module it lacks: psycopg 3 and its pool (python3-psycopg, python3-psycopg-pool), PyJWT with
#      its crypto (python3-jwt, python3-cryptography), FastAPI, uvicorn and httpx (FastAPI's
#      TestClient needs it).
# Only Debian's packages: the example and its test use no PyPI. Not whichever python3 comes first
# on the PATH (a pyenv one, say): its modules are not Debian's. The check runs Python isolated
# (-I: no PYTHON* variables, no user site-packages), as the test runs the example.
set -euo pipefail

log() { echo "python.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; }

if [ -n "${TENANCY_PYTHON:-}" ]; then
  echo "$TENANCY_PYTHON"
  exit 0
fi

python=/usr/bin/python3
# module to import (and what of it the example uses) -> Debian package
modules=(
  "psycopg:python3-psycopg"
  "psycopg_pool:python3-psycopg-pool"
  "jwt:python3-jwt"
  "cryptography.hazmat.primitives.asymmetric.ed25519:python3-cryptography"
  "fastapi:python3-fastapi"
  "uvicorn:python3-uvicorn"
  "httpx:python3-httpx"
)

# missing prints the Debian packages of the modules $python cannot import.
missing() {
  local entry
  for entry in "${modules[@]}"; do
    if [ ! -x "$python" ] || ! "$python" -I -c "import ${entry%%:*}" >/dev/null 2>&1; then
      echo "${entry#*:}"
    fi
  done
}

# PyJWT 2 (PyJWKClient) and psycopg 3, not their namesakes of old.
versions_ok() {
  "$python" -I -c '
import sys, jwt, psycopg
sys.exit(0 if hasattr(jwt, "PyJWKClient") and psycopg.__version__.startswith("3.") else 1)' >/dev/null 2>&1
}

mapfile -t packages < <(missing)
if [ ! -x "$python" ]; then
  packages=(python3 "${packages[@]}")
fi
if [ "${#packages[@]}" -gt 0 ]; then
  log "$python lacks ${packages[*]}: installing Debian's packages"
  if ! apt_install "${packages[@]}"; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_install "${packages[@]}"
  fi
  mapfile -t packages < <(missing)
  if [ "${#packages[@]}" -gt 0 ]; then
    log "$python still cannot import the modules of ${packages[*]}"
    exit 1
  fi
fi
if ! versions_ok; then
  log "$python has no PyJWT 2 (jwt.PyJWKClient) or no psycopg 3"
  exit 1
fi
echo "$python"
