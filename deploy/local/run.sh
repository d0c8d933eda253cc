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

mkdir -p .run/keys
secret() { # secret FILE: a random secret kept in .run/ across runs
  [[ -s $1 ]] || head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$1"
  cat "$1"
}
export RAPPORT_OPERATOR_KEY=$(secret .run/operator-key)
export RAPPORT_MIGRATE_DATABASE_URL=$migrate_url
export RUST_LOG=${RUST_LOG:-info}

cargo build --bins -p rapport-contacts -p rapport-feedback -p rapport-segmentation -p rapport-gateway -p rapport-client

# Each process signs its calls with a key of its own, made once and kept in
# .run/keys; every service trusts the list below: the gateway may grant
# anything, feedback may read contacts, segmentation contacts and feedback,
# and `operator` (rapportctl straight to a service) anything.
key() { # key NAME: NAME's private key
  [[ -s .run/keys/$1.pem ]] || (umask 077 && target/debug/rapportctl identity new > ".run/keys/$1.pem")
  cat ".run/keys/$1.pem"
}
public() { key "$1" | target/debug/rapportctl identity public-key; }
export RAPPORT_TRUSTED_ISSUERS="[
  {\"issuer\": \"gateway\", \"keys\": [\"$(public gateway)\"], \"grants\": [\"*:write\"]},
  {\"issuer\": \"contacts\", \"keys\": [\"$(public contacts)\"], \"grants\": []},
  {\"issuer\": \"feedback\", \"keys\": [\"$(public feedback)\"], \"grants\": [\"contacts:read\"]},
  {\"issuer\": \"segmentation\", \"keys\": [\"$(public segmentation)\"], \"grants\": [\"contacts:read\", \"feedback:read\"]},
  {\"issuer\": \"operator\", \"keys\": [\"$(public operator)\"], \"grants\": [\"*:write\"]}
]"

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
RAPPORT_IDENTITY_KEY=$(key contacts) \
RAPPORT_CONTACTS_LISTEN_ADDR=127.0.0.1:50061 \
  target/debug/rapport-contacts & pids+=($!)

DATABASE_URL=$(url_for "$admin_url" "$database" rapport_feedback) \
RAPPORT_IDENTITY_KEY=$(key feedback) \
RAPPORT_FEEDBACK_LISTEN_ADDR=127.0.0.1:50062 \
RAPPORT_CONTACTS_URL=http://127.0.0.1:50061 \
  target/debug/rapport-feedback & pids+=($!)

DATABASE_URL=$(url_for "$admin_url" "$database" rapport_segmentation) \
RAPPORT_IDENTITY_KEY=$(key segmentation) \
RAPPORT_SEGMENTATION_LISTEN_ADDR=127.0.0.1:50063 \
RAPPORT_CONTACTS_URL=http://127.0.0.1:50061 \
RAPPORT_FEEDBACK_URL=http://127.0.0.1:50062 \
  target/debug/rapport-segmentation & pids+=($!)

DATABASE_URL=$(url_for "$admin_url" "$database" rapport_gateway) \
RAPPORT_IDENTITY_KEY=$(key gateway) \
RAPPORT_GATEWAY_LISTEN_ADDR=127.0.0.1:50051 \
RAPPORT_UPSTREAMS=contacts=http://127.0.0.1:50061,feedback=http://127.0.0.1:50062,segmentation=http://127.0.0.1:50063 \
  target/debug/rapport-gateway & pids+=($!)

# A demo tenant and API key, kept in .run/ across runs.
rapportctl() { target/debug/rapportctl --endpoint http://127.0.0.1:50051 "$@"; }
for _ in $(seq 100); do rapportctl tenants list >/dev/null 2>&1 && break; sleep 0.2; done
tenant=$(cat .run/demo-tenant 2>/dev/null || true)
if [[ -z $tenant ]] || ! rapportctl tenants get "$tenant" >/dev/null 2>&1; then
  tenant=$(rapportctl tenants create "Demo" | awk '/^id/ {print $2}')
  echo "$tenant" > .run/demo-tenant
  rm -f .run/demo-api-key
fi
if [[ ! -s .run/demo-api-key ]] || ! RAPPORT_API_KEY=$(cat .run/demo-api-key) rapportctl contacts list >/dev/null 2>&1; then
  rapportctl keys create "$tenant" --scope '*:write' --name demo | awk '/^secret/ {print $2}' > .run/demo-api-key
fi

cat <<MSG

Rapport is running (Ctrl-C stops it):
  gateway       127.0.0.1:50051   the door: API keys, gRPC and gRPC-Web
  contacts      127.0.0.1:50061   rapport.contacts.v1.ContactsService (behind the gateway)
  feedback      127.0.0.1:50062   rapport.feedback.v1.FeedbackService (behind the gateway)
  segmentation  127.0.0.1:50063   rapport.segmentation.v1.SegmentationService (behind the gateway)
PostgreSQL: $migrate_url

Demo tenant $tenant. To call it:
  export RAPPORT_API_KEY=$(cat .run/demo-api-key)
  target/debug/rapportctl contacts list
Admin (tenants, keys): export RAPPORT_OPERATOR_KEY=\$(cat .run/operator-key)
Straight to a service (dead letters, say):
  RAPPORT_IDENTITY_KEY=\$(cat .run/keys/operator.pem) target/debug/rapportctl \\
    --endpoint http://127.0.0.1:50062 --service feedback dead-letters list feedback.contacts
Segmentation's consumers (segmentation.contacts, segmentation.feedback) likewise:
  RAPPORT_IDENTITY_KEY=\$(cat .run/keys/operator.pem) target/debug/rapportctl \\
    --endpoint http://127.0.0.1:50063 --service segmentation dead-letters list segmentation.contacts

MSG
wait -n "${pids[@]}" || true
echo "a service stopped; shutting the rest down" >&2
stop
