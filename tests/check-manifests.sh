#!/usr/bin/env bash
# The Kubernetes manifests, checked by `make lint`: deploy/k8s/base and
# every overlay, rendered with `kubectl kustomize`, validated offline
# against the Kubernetes schemas (kubernetes-validate, strict: an unknown
# field is an error, so a typo is caught before a platform team finds it);
# and proof that the check bites: a rendering with a misspelt field must
# fail it.
set -euo pipefail
cd "$(dirname "$0")/.."
validate=.tools/python/bin/kubernetes-validate
kubernetes=1.32.0

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
  kubectl kustomize "$dir" >"$scratch/rendered.yaml"
  if ! "$validate" --strict --quiet -k "$kubernetes" "$scratch/rendered.yaml"; then
    echo "check-manifests: $dir does not validate" >&2
    exit 1
  fi
done

kubectl kustomize deploy/k8s/base | sed 's/^      containers:/      container:/' >"$scratch/typo.yaml"
grep -q '^      container:' "$scratch/typo.yaml" || {
  echo "check-manifests: the deliberate typo was not made (no containers field?)" >&2
  exit 1
}
if "$validate" --strict --quiet -k "$kubernetes" "$scratch/typo.yaml" >/dev/null 2>&1; then
  echo "check-manifests: a misspelt field passed validation" >&2
  exit 1
fi
echo "manifests: base and every overlay validate (Kubernetes $kubernetes, strict); a misspelt field is caught"
