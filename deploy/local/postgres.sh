#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server that Rapport may administer (create
# databases and roles), starting one when none is running:
#   1. $DATABASE_URL when set;
#   2. else the server on 127.0.0.1:5432 (user postgres), when it answers,
#      through its Unix socket when there is one;
#   3. else a private server from the system's PostgreSQL binaries
#      (installed from Debian's packages if missing), with its data in
#      .run/pgdata and trust authentication on loopback only.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)

if [[ -n "${DATABASE_URL:-}" ]]; then
  echo "$DATABASE_URL"
  exit 0
fi

# A co-located server is best reached through its Unix socket: fewer
# copies, and no Nagle delays (sqlx 0.9.0 does not set TCP_NODELAY).
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  if [[ -S /var/run/postgresql/.s.PGSQL.5432 ]] && pg_isready -q -h /var/run/postgresql -p 5432; then
    echo "postgres://postgres@localhost:5432/postgres?host=/var/run/postgresql"
  else
    echo "postgres://postgres@127.0.0.1:5432/postgres"
  fi
  exit 0
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bindir" ]]; then
  echo "no PostgreSQL found; installing it from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

port=5432
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then port=54329; fi
data="$root/.run/pgdata"
log="$root/.run/postgres.log"
mkdir -p "$root/.run"

# PostgreSQL refuses to run as root; run it as the postgres user when we are root.
as_owner=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  as_owner=(runuser -u postgres --)
  mkdir -p "$data"
  chown postgres "$root/.run" "$data"
fi

if [[ ! -f "$data/PG_VERSION" ]]; then
  "${as_owner[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust >&2
fi
if ! "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $root/.run -c max_connections=300" start >&2
fi
echo "postgres://postgres@localhost:$port/postgres?host=$root/.run"
