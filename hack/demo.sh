#!/usr/bin/env bash
# make demo: the operator's main job with no cluster at all.
#
# Starts the Kubernetes API emulator and the operator, applies examples/*.yaml, plays Azure
# Service Operator, Flux and the vcluster Helm release, then prints what a user would see.
# Everything started here is stopped on exit. Needs `cargo build --workspace --bins` first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/debug"
for b in kube-emulator tenant-identity-operator e2e-ctl; do
  [[ -x "$BIN/$b" ]] || { echo "demo: $BIN/$b missing; run: cargo build --workspace --bins" >&2; exit 1; }
done

WORK=$(mktemp -d -t tenant-identity-demo.XXXXXX)
EMULATOR_PID=""
OPERATOR_PID=""
stop() {
  local rc=$?
  # Operator first (graceful SIGTERM), then the API it talks to.
  for pid in "$OPERATOR_PID" "$EMULATOR_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ $rc -ne 0 ]]; then
    echo "demo failed (exit $rc); operator log:" >&2
    cat "$WORK/operator.log" >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap stop EXIT

step() { printf '\n==> %s\n' "$*"; }

step "starting the Kubernetes API emulator"
"$BIN/kube-emulator" --listen 127.0.0.1:0 --kubeconfig-out "$WORK/kubeconfig" >"$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
for _ in $(seq 100); do
  [[ -s "$WORK/kubeconfig" ]] && break
  kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/kubeconfig" ]] || { echo "demo: the emulator wrote no kubeconfig" >&2; exit 1; }
export KUBECONFIG="$WORK/kubeconfig"
grep -m1 'server:' "$KUBECONFIG" | sed 's/^ *server: */    API server: /'
CTL="$BIN/e2e-ctl"

step "installing CRDs: TenantIdentity, Flux GitRepository/Kustomization, ASO FederatedIdentityCredential/UserAssignedIdentity"
"$CTL" install-crds
echo "    all Established"

step "starting tenant-identity-operator"
METRICS_PORT=$(( 20000 + RANDOM % 20000 ))
RUST_LOG=info "$BIN/tenant-identity-operator" run \
  --metrics-bind-address "127.0.0.1:$METRICS_PORT" --log-format text >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
"$CTL" wait-url 30 "http://127.0.0.1:$METRICS_PORT/healthz"
echo "    running (pid $OPERATOR_PID, metrics on 127.0.0.1:$METRICS_PORT)"

step "creating the vcluster host namespaces and applying examples/*.yaml"
"$CTL" create-namespace vcluster-team-a vcluster-team-b vcluster-payments
"$CTL" apply "$ROOT"/examples/*.yaml

step "installing the vclusters (their Helm releases create the host workload ServiceAccounts)"
"$CTL" host-sa vcluster-team-a team-a
"$CTL" host-sa vcluster-team-b team-b

step "simulating Azure Service Operator and Flux (marking credentials and the GitRepository Ready, as they would)"
"$CTL" converge 30 vcluster-team-a/team-a vcluster-team-b/team-b

step "what a user sees"
"$CTL" show

step "done; stopping the operator and the emulator"
