#!/usr/bin/env bash
# Prints the path of a Chromium for the browser tests:
#   1. $TENANCY_CHROMIUM when set;
#   2. else chromium on the PATH;
#   3. else Debian's chromium, installed with apt-get.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -n "${TENANCY_CHROMIUM:-}" ]; then
  echo "$TENANCY_CHROMIUM"
  exit 0
fi
if ! command -v chromium >/dev/null; then
  log "no chromium: installing Debian's package"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
  fi
fi
command -v chromium
