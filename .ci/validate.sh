#!/usr/bin/env bash
# netsetup validate in CI (called by .ci/run): the shipped profiles/ must be clean, and the broken
# tree must fail (exit 1) with exactly the codes listed in tests/validate/fixtures/broken-codes.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

echo "== netsetup validate profiles/ (must be clean)"
"$PYTHON" -m netsetup validate profiles/

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/validate/fixtures/broken "$work/profiles"
# Secrets made now, never stored in the repository: NS201 must find them, in a client config and
# as a bare key file in a hidden folder, and they must never appear in the output.
secret=$("$PYTHON" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
printf '[Interface]\nprivatekey = %s\n' "$secret" > "$work/profiles/clinic/peers/alice.conf"
mkdir "$work/profiles/clinic/.handoff"
"$PYTHON" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' \
  > "$work/profiles/clinic/.handoff/private.key"

echo "== netsetup validate <broken tree> (must fail with exactly the expected codes)"
set +e
"$PYTHON" -m netsetup validate "$work/profiles" --format json --now 2026-06-01T00:00:00Z > "$work/out.json"
rc=$?
set -e
if [ "$rc" -ne 1 ]; then
  echo "expected exit 1 from the broken tree, got $rc" >&2
  exit 1
fi
if grep -qF -e "$secret" -e "$(cat "$work/profiles/clinic/.handoff/private.key")" "$work/out.json"; then
  echo "a secret appears in the output of validate" >&2
  exit 1
fi
"$PYTHON" - "$work/out.json" tests/validate/fixtures/broken-codes.txt <<'PY'
import json
import sys

got = sorted({f["code"] for f in json.load(open(sys.argv[1]))["findings"]})
expected = open(sys.argv[2]).read().split()
if got != expected:
    print(f"codes differ:\n  expected {expected}\n  got      {got}", file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(expected)} expected codes, exit 1")
PY

echo "== netsetup validate <no profile> (must exit 2)"
mkdir "$work/empty"
set +e
"$PYTHON" -m netsetup validate "$work/empty" 2> "$work/err.txt"
rc=$?
set -e
if [ "$rc" -ne 2 ]; then
  echo "expected exit 2 when no profile is found, got $rc" >&2
  exit 1
fi
echo "ok: validate"
