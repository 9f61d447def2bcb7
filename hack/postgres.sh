#!/usr/bin/env bash
# Makes a PostgreSQL >= 15 reachable and prints a superuser URL for it:
#   1. $TENANCY_TEST_DATABASE_URL when set;
#   2. else the server on 127.0.0.1:5432 when it answers;
#   3. else the installed cluster, started with pg_ctlcluster;
#   4. else PostgreSQL installed from Debian's packages, then started.
# Tests create their own databases on that server and drop them afterwards.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
host=127.0.0.1
port="${TENANCY_PG_PORT:-5432}"
default_url="postgres://postgres@$host:$port/postgres?sslmode=disable"
password_file="${TENANCY_CACHE:-$HOME/.cache/tenancy}/postgres-password"

if [ -n "${TENANCY_TEST_DATABASE_URL:-}" ]; then
  echo "$TENANCY_TEST_DATABASE_URL"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port" -t 2; }

if ! answers; then
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    log "no PostgreSQL installed: installing it from Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  read -r version cluster _ < <(pg_lsclusters -h | sort -rn | head -n 1)
  log "starting PostgreSQL cluster $version/$cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2 || true
  for _ in $(seq 1 30); do answers && break; sleep 1; done
  answers || { log "PostgreSQL did not start on $host:$port"; exit 1; }
fi

url="$default_url"
if ! psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  # A stock Debian server asks TCP clients for a password: give postgres one we keep locally.
  if [ ! -s "$password_file" ]; then
    mkdir -p "$(dirname "$password_file")"
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$password_file")
  fi
  password="$(cat "$password_file")"
  as_postgres psql -q -c "ALTER ROLE postgres PASSWORD '$password'" >&2
  url="postgres://postgres:$password@$host:$port/postgres?sslmode=disable"
  psql "$url" -Atqc 'SELECT 1' >/dev/null || { log "cannot log in to PostgreSQL on $host:$port"; exit 1; }
fi

server_version="$(psql "$url" -Atqc 'SHOW server_version_num')"
if [ "$server_version" -lt 150000 ]; then
  log "PostgreSQL on $host:$port is version $server_version; Tenancy needs 15 or newer"
  exit 1
fi
echo "$url"
