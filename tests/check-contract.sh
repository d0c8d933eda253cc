#!/usr/bin/env bash
# The wire contract, checked by `make lint`: proto/ against the released
# contract (proto/released.binpb, a buf image updated deliberately when a
# release is cut: `make release-contract`) under buf's FILE rules; and
# proof that the check bites: a copy of proto/ with one field renumbered
# must fail it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
buf="$root/.tools/node_modules/.bin/buf"
image="$root/proto/released.binpb"

(cd proto && "$buf" breaking --against "$image")

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r proto/. "$scratch"
contacts="$scratch/rapport/contacts/v1/contacts.proto"
sed -i 's/^  string email = 3;$/  string email = 30;/' "$contacts"
grep -q '^  string email = 30;$' "$contacts" || {
  echo "check-contract: the deliberate break was not made (Contact.email moved?)" >&2
  exit 1
}
if (cd "$scratch" && "$buf" breaking --against "$image" >/dev/null 2>&1); then
  echo "check-contract: buf breaking let a renumbered field through" >&2
  exit 1
fi
echo "contract: proto/ keeps the released contract; a renumbered field is caught"
