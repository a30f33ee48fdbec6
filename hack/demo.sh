#!/usr/bin/env bash
# make demo: the operator's main job with no cluster at all.
#
# Starts the Kubernetes API emulator, a fake Azure Resource Manager (+ Entra token endpoint) and
# the operator, applies examples/*.yaml, plays Azure Service Operator, Flux (source-controller and
# helm-controller rolling out each vcluster HelmRelease with the sync rules in valuesFrom), the
# vcluster Helm release and vcluster's ServiceAccount syncer, then prints what a user would see,
# including the federated credentials the operator wrote through ARM for the `payments` tenant.
# Everything started here is stopped on exit.
# Needs `cargo build --workspace --bins` first. The Flux and ASO CRDs are pinned upstream files:
# e2e-ctl finds them in the shared checkout beside this repository, in the cache, or downloads them
# (verified) into the cache; see e2e/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/debug"
# The shared checkout beside this clone (not beside wherever the binaries were built).
export TI_UPSTREAM_SHARED_DIR="${TI_UPSTREAM_SHARED_DIR:-$ROOT/../shared/upstream}"
for b in kube-emulator fake-arm tenant-identity-operator e2e-ctl; do
  [[ -x "$BIN/$b" ]] || { echo "demo: $BIN/$b missing; run: cargo build --workspace --bins" >&2; exit 1; }
done

WORK=$(mktemp -d -t tenant-identity-demo.XXXXXX)
EMULATOR_PID=""
FAKE_ARM_PID=""
OPERATOR_PID=""
stop() {
  local rc=$?
  # Operator first (graceful SIGTERM), then the APIs it talks to.
  for pid in "$OPERATOR_PID" "$FAKE_ARM_PID" "$EMULATOR_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  # The failing step said why; the operator's log only helps once it runs.
  if [[ $rc -ne 0 && -n "$OPERATOR_PID" ]]; then
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

step "installing CRDs: TenantIdentity, Flux GitRepository/Kustomization/HelmRelease, ASO FederatedIdentityCredential/UserAssignedIdentity"
"$CTL" install-crds
echo "    all Established"

step "simulating Azure Resource Manager: starting fake-arm (ARM + Entra token endpoint on 127.0.0.1)"
# The operator's own identity (AZURE_CLIENT_ID below) is a caller the fake Entra trusts: its
# projected token is a placeholder, not a token the fake could verify against an issuer.
OPERATOR_CLIENT_ID=5b0e6c8a-3f1d-4e2b-9a7c-1d2e3f4a5b6c
"$BIN/fake-arm" --listen 127.0.0.1:0 --url-out "$WORK/fake-arm-url" \
  --trusted-client-id "$OPERATOR_CLIENT_ID" >"$WORK/fake-arm.log" 2>&1 &
FAKE_ARM_PID=$!
for _ in $(seq 100); do
  [[ -s "$WORK/fake-arm-url" ]] && break
  kill -0 "$FAKE_ARM_PID" 2>/dev/null || { cat "$WORK/fake-arm.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/fake-arm-url" ]] || { echo "demo: fake-arm wrote no URL" >&2; exit 1; }
ARM_URL=$(cat "$WORK/fake-arm-url")
echo "    ARM endpoint and authority host: $ARM_URL"
# The user-assigned identities the examples name, with the client ids the examples give
# (credentials are only written to the identity whose client id is spec.azure.clientId):
# payments' (ARM backend) and team-b's (ASO owner.armId, checked through ARM).
ARM_IDENTITY=(11111111-2222-4333-8444-555555555555 rg-tenants id-payments)
"$CTL" fake-arm-identity "$ARM_URL" "${ARM_IDENTITY[@]}" --client-id 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d | sed 's/^/    /'
"$CTL" fake-arm-identity "$ARM_URL" 11111111-2222-4333-8444-555555555555 rg-tenants id-team-b \
  --client-id 9c8b7a65-4321-4fed-8cba-0987654321ab | sed 's/^/    /'
# What the AKS workload identity webhook gives the operator's pod: a projected service-account
# token file plus AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE.
printf 'eyJhbGciOiJSUzI1NiJ9.demo-projected-service-account-token.%s' "$RANDOM$RANDOM" >"$WORK/azure-identity-token"

step "starting tenant-identity-operator (ARM backend: its own workload identity against the fake ARM)"
METRICS_PORT=$(( 20000 + RANDOM % 20000 ))
RUST_LOG=info \
AZURE_CLIENT_ID="$OPERATOR_CLIENT_ID" \
AZURE_TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47 \
AZURE_FEDERATED_TOKEN_FILE="$WORK/azure-identity-token" \
"$BIN/tenant-identity-operator" run \
  --metrics-bind-address "127.0.0.1:$METRICS_PORT" --log-format text \
  --arm-endpoint "$ARM_URL" --authority-host "$ARM_URL/" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
"$CTL" wait-url 30 "http://127.0.0.1:$METRICS_PORT/healthz"
echo "    running (pid $OPERATOR_PID, metrics on 127.0.0.1:$METRICS_PORT)"

step "creating the vcluster host namespaces and applying examples/*.yaml"
"$CTL" create-namespace vcluster-team-a vcluster-team-b vcluster-payments
# team-a's ASO UserAssignedIdentity, created by the platform team and reported by ASO.
"$CTL" aso-identity vcluster-team-a team-a-identity 6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f
"$CTL" apply "$ROOT"/examples/*.yaml

step "installing the vclusters: Flux applies each vcluster HelmRelease (valuesFrom: the tenant's sync-rules ConfigMap), helm-controller rolls it out"
"$CTL" vcluster-release vcluster-team-a team-a team-a
"$CTL" vcluster-release vcluster-team-b team-b team-b
"$CTL" vcluster-release vcluster-payments payments payments
echo "    the Shared-mode releases create their host workload ServiceAccounts:"
"$CTL" host-sa vcluster-team-a team-a | sed 's/^/    /'
"$CTL" host-sa vcluster-team-b team-b | sed 's/^/    /'

step "inside the payments vcluster the tenant creates default/app and batch/reconciler; vcluster syncs them to the host"
"$CTL" vcluster-sync 30 vcluster-payments payments | sed 's/^/    /'

step "simulating Azure Service Operator and Flux (marking credentials and the GitRepository Ready, as they would)"
"$CTL" converge 30 vcluster-team-a/team-a vcluster-team-b/team-b

step "the ARM backend needs no simulation: the operator writes payments' credentials through ARM itself"
"$CTL" wait-ready 30 vcluster-payments/payments

step "what a user sees"
"$CTL" show

step "simulating Azure Resource Manager: the federated credentials of id-payments, as Azure holds them"
"$CTL" fake-arm-credentials "$ARM_URL" "${ARM_IDENTITY[@]}"
echo "    ARM requests by the operator (from its /metrics):"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^tenant_identity_azure_requests_total' | sed 's/^/      /' || true

step "done; stopping the operator, the fake ARM and the emulator"
