#!/usr/bin/env bash
# The layer rules of docs/architecture.md that a grep can keep, checked by
# `make lint`:
#   - domain/ is pure: no tonic, no sqlx, no tokio, no clock of its own;
#   - handlers (api/) never write outbox rows: the store function that makes
#     a change writes its events;
#   - a store returns its own or sqlx's errors, never an ApiError.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
report() { # report RULE MATCHES
  if [[ -n $2 ]]; then
    echo "layer rule broken: $1" >&2
    echo "$2" >&2
    failed=1
  fi
}

report "domain/ must not use tonic, sqlx or tokio, nor read the clock itself" \
  "$(grep -rnE '\b(tonic|sqlx|tokio)::|^\s*use (tonic|sqlx|tokio)\b|Utc::now|SystemTime::now' services/*/src/domain || true)"
report "api/ handlers must not write outbox rows (the store function does)" \
  "$(grep -rnE '\bOUTBOX\b|OutboxEvent|\.write\(&mut tx' services/*/src/api || true)"
report "store/ must not return API errors" \
  "$(grep -rnE '\bApiError\b|\bApiResult\b' services/*/src/store || true)"

exit $failed
