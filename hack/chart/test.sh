#!/usr/bin/env bash
# Chart tests (`make test` calls this): helm lint/template through the Helm v4 engine
# (helm-python-sdk), values schema, every rendered object against its Kubernetes type,
# Deployment flags against the real binary, CRD drift, promtool on the alerts and dashboard.
#
# Needs: python3 (venv), promtool (Debian: apt-get install -y prometheus), cargo.
# Env: TIO_BIN=path to a built tenant-identity-operator (default: cargo build -p tenant-identity-operator)
#      CHART_VENV=venv dir (default: target/chart-venv); PROMTOOL=promtool path.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${CHART_VENV:-$TARGET/chart-venv}
REQ=$ROOT/hack/chart/requirements.txt

if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/.requirements.txt"; then
  echo "chart: installing test tools into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.requirements.txt"
fi

if ! command -v "${PROMTOOL:-promtool}" >/dev/null 2>&1; then
  echo "chart: promtool not found; install it with: apt-get install -y prometheus" >&2
fi

if [ -z "${TIO_BIN:-}" ]; then
  cargo build --quiet -p tenant-identity-operator --bin tenant-identity-operator
  TIO_BIN=$TARGET/debug/tenant-identity-operator
fi
export TIO_BIN
export CHART_TEST_OUT=${CHART_TEST_OUT:-$TARGET/chart-test}

exec "$VENV/bin/python" "$ROOT/hack/chart/test_chart.py" "$@"
