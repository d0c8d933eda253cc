#!/usr/bin/env bash
# `make run`: starts every Rapport service on a local PostgreSQL and stops
# them all cleanly on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

admin_url=$(deploy/local/postgres.sh)
# The same server, another database and/or user (and no password for the
# service roles, which local trust authentication lets in).
url_for() { # url_for URL DATABASE [USER]
  python3 - "$@" <<'PY'
import sys, urllib.parse as u
url, db = sys.argv[1], sys.argv[2]
user = sys.argv[3] if len(sys.argv) > 3 else None
p = u.urlsplit(url)
netloc = p.netloc
if user:
    netloc = user + "@" + netloc.rsplit("@", 1)[-1]
print(u.urlunsplit((p.scheme, netloc, "/" + db, p.query, p.fragment)))
PY
}

database=${RAPPORT_DATABASE:-rapport}
if ! psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE $database"
fi
migrate_url=$(url_for "$admin_url" "$database")

mkdir -p .run
if [[ ! -s .run/credential-secret ]]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n' > .run/credential-secret
fi
export RAPPORT_CREDENTIAL_SECRET=$(cat .run/credential-secret)
export RAPPORT_MIGRATE_DATABASE_URL=$migrate_url
export RUST_LOG=${RUST_LOG:-info}

cargo build --bins -p rapport-contacts

pids=()
stop() {
  trap - INT TERM
  echo "stopping Rapport..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM

DATABASE_URL=$(url_for "$admin_url" "$database" rapport_contacts) \
RAPPORT_CONTACTS_LISTEN_ADDR=127.0.0.1:50061 \
  target/debug/rapport-contacts & pids+=($!)

cat <<MSG

Rapport is running (Ctrl-C stops it):
  contacts  127.0.0.1:50061   rapport.contacts.v1.ContactsService
PostgreSQL: $migrate_url
The internal credential secret is in .run/credential-secret.

MSG
wait -n "${pids[@]}" || true
echo "a service stopped; shutting the rest down" >&2
stop
