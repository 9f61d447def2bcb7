#!/usr/bin/env bash
# Prints the path of a Mailpit binary, the mail catcher of `make dev` and the tests:
#   1. $TENANCY_MAILPIT when set;
#   2. else the one cached in $TENANCY_CACHE/tools (default ~/.cache/tenancy/tools);
#   3. else builds it there from the Go module proxy with `go install` (a few minutes, once).
#
# Usage: hack/mailpit.sh            # prints the binary's path
#        hack/mailpit.sh --ui       # the same for a Mailpit with its web UI (see below)
# Env:   TENANCY_MAILPIT, TENANCY_MAILPIT_UI, TENANCY_CACHE (default ~/.cache/tenancy)
#
# The Go module carries no web UI (its JavaScript is built by npm for the releases): the binary
# built here serves the SMTP server and the REST API (/api/v1/...), which is what the tests use.
#
# With --ui it prints $TENANCY_MAILPIT_UI when set, else a Mailpit with the web UI cached as
# mailpit-<version>-ui beside the other, built once from the module's sources as upstream's
# Dockerfile does: `npm ci`, `npm run package` (writes server/ui/dist), then `go build`. That needs
# Node.js and npm (Debian's nodejs and npm are installed with apt-get when missing) and the npm
# registry. Should the UI build fail, it exits non-zero with the reason on stderr and leaves no
# binary: the caller falls back to the API-only one.
set -euo pipefail

mailpit_version="v1.33.1"
mailpit_module="github.com/axllent/mailpit"
# With --ui, when `npm ci` fails on the lock's rapidoc 12.1.0 (see below).
rapidoc_fallback="9.3.8"

ui=false
if [ "${1:-}" = "--ui" ]; then
  ui=true
fi

if [ "$ui" = false ] && [ -n "${TENANCY_MAILPIT:-}" ]; then
  echo "$TENANCY_MAILPIT"
  exit 0
fi
if [ "$ui" = true ] && [ -n "${TENANCY_MAILPIT_UI:-}" ]; then
  echo "$TENANCY_MAILPIT_UI"
  exit 0
fi

cache="${TENANCY_CACHE:-$HOME/.cache/tenancy}"
case "$cache" in /*) ;; *) cache="$PWD/$cache" ;; esac
tools="$cache/tools"
bin="$tools/mailpit-$mailpit_version"
if [ "$ui" = true ]; then
  bin="$tools/mailpit-$mailpit_version-ui"
fi

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "mailpit.sh: $*" >&2; }

if [ "$ui" = true ]; then
  fail() { log "$*"; log "Mailpit's web UI did not build: no $bin"; exit 1; }
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; }

  mkdir -p "$tools" || fail "cannot create $tools"
  # One builder at a time, on a lock of its own: the API-only build does not wait for this one.
  exec 9>"$tools/mailpit-ui.lock" || fail "cannot open $tools/mailpit-ui.lock"
  flock 9 || fail "cannot lock $tools/mailpit-ui.lock"
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi

  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "no Node.js or npm: installing Debian's nodejs and npm packages"
    if ! apt_install nodejs npm; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
      apt_install nodejs npm || fail "apt-get install nodejs npm failed"
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      fail "no node or npm on the PATH after apt-get install nodejs npm"
    fi
  fi

  # As below: build beside the binary, rename into place; a build directory left is a killed one's.
  rm -rf "$tools"/mailpit-ui-build.*
  work="$(mktemp -d "$tools/mailpit-ui-build.XXXXXX")" || fail "mktemp in $tools failed"
  trap 'rm -rf "$work"' EXIT
  cd "$work"

  log "building Mailpit $mailpit_version with its web UI (npm ci, npm run package, go build; minutes, once)"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS='' GOWORK=off CGO_ENABLED=0
  go mod download "$mailpit_module@$mailpit_version" >&2 || fail "go mod download $mailpit_module@$mailpit_version failed"
  modcache="$(go env GOMODCACHE)" || fail "go env GOMODCACHE failed"
  src="$modcache/$mailpit_module@$mailpit_version"
  [ -f "$src/package-lock.json" ] || fail "no package-lock.json in $src"
  # The module cache is read-only: npm and esbuild write into a copy.
  cp -R "$src" "$work/src" || fail "cannot copy $src to $work/src"
  chmod -R u+w "$work/src" || fail "cannot make $work/src writable"
  cd "$work/src"

  node_versions="node $(node --version 2>/dev/null || echo '?'), npm $(npm --version 2>/dev/null || echo '?')"
  # --include=dev: esbuild and its plugins are devDependencies, which NODE_ENV=production omits.
  # --omit=peer: skips sass-embedded (and eslint's vue-eslint-parser), a peer of esbuild-sass-plugin
  # that compiles with the `sass` package unless told `embedded: true`, which esbuild.config.mjs
  # is not; the registry here has no sass-embedded 1.108.1, the version the lock pins.
  # --ignore-scripts: no install script is needed to build (esbuild's binary comes as a package);
  # the ones there would phone home (@scarf/scarf) or compile native addons the bundle doesn't use.
  npm_flags=(--no-audit --no-fund --loglevel=error --include=dev --omit=peer --ignore-scripts)
  if ! npm ci "${npm_flags[@]}" >&2; then
    # The registry here lacks rapidoc 12.1.0 too (the API docs page's web component; its latest
    # here is 9.3.8, which takes the same attributes): pin that and let npm resolve what it needs,
    # keeping every other locked version.
    log "npm ci failed ($node_versions): retrying with rapidoc $rapidoc_fallback and npm install"
    rm -rf node_modules
    npm pkg set "dependencies.rapidoc=$rapidoc_fallback" >&2 || fail "npm pkg set failed ($node_versions)"
    npm install "${npm_flags[@]}" >&2 || fail "npm install failed ($node_versions)"
  fi
  npm run --silent package >&2 || fail "npm run package failed ($node_versions)"
  for asset in app.js app.css docs.js; do
    [ -s "server/ui/dist/$asset" ] || fail "npm run package left no server/ui/dist/$asset"
  done

  go build -trimpath -buildvcs=false \
    -ldflags="-s -w -X $mailpit_module/config.Version=$mailpit_version" -o "$work/mailpit" . >&2 ||
    fail "go build failed"
  [ -x "$work/mailpit" ] || fail "go build left no binary in $work"

  mv -f "$work/mailpit" "$bin" || fail "cannot move the binary to $bin"
  log "Mailpit with its web UI ready at $bin"
  echo "$bin"
  exit 0
fi

mkdir -p "$tools"
# One builder at a time: parallel `make test` and `make dev` must not race on the same cache.
exec 9>"$tools/mailpit.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

# The build goes to a directory beside the binary (the same file system) and is renamed into
# place, so that a killed build never leaves a half-written binary under the final name. Holding
# the lock, any build directory left is one a killed build left.
rm -rf "$tools"/mailpit-build.*
work="$(mktemp -d "$tools/mailpit-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

log "building Mailpit $mailpit_version from the Go module proxy (a few minutes the first time)"
GOBIN="$work" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS= CGO_ENABLED=0 \
  go install -trimpath -ldflags="-s -w -X $mailpit_module/config.Version=$mailpit_version" \
  "$mailpit_module@$mailpit_version" >&2
[ -x "$work/mailpit" ] || { log "go install left no binary in $work"; exit 1; }

mv -f "$work/mailpit" "$bin"
log "Mailpit ready at $bin"
echo "$bin"
