#!/usr/bin/env bash
# make demo: the operator's main job with no cluster at all.
#
# Starts the Kubernetes API emulator, a fake Azure Resource Manager (+ Entra token endpoint and
# Azure DevOps Git endpoint) and the operator, applies examples/*.yaml, plays Azure Service
# Operator (creating each credential in the fake Entra), Flux (source-controller and
# helm-controller rolling out each vcluster HelmRelease with the sync rules in valuesFrom), the
# vcluster Helm release and vcluster's ServiceAccount syncer. The operator verifies every tenant
# end to end (a token of each subject exchanged at Entra; for team-b, Flux's identity at Azure
# DevOps): team-b's git access is denied until the platform team adds its identity to the
# Azure DevOps organization, then granted, with no restart. Prints what a user would see,
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
# The examples name the service-account issuer of the cluster they are for (spec.azure.issuer):
# the emulator plays that cluster, so its tokens carry that issuer.
CLUSTER_ISSUER=$(sed -n 's/^ *issuer: *//p' "$ROOT"/examples/*.yaml | sort -u)
[[ -n "$CLUSTER_ISSUER" && "$CLUSTER_ISSUER" != *$'\n'* ]] \
  || { echo "demo: examples/*.yaml should name one issuer, found: ${CLUSTER_ISSUER:-none}" >&2; exit 1; }
"$BIN/kube-emulator" --listen 127.0.0.1:0 --kubeconfig-out "$WORK/kubeconfig" \
  --issuer "$CLUSTER_ISSUER" >"$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
for _ in $(seq 100); do
  [[ -s "$WORK/kubeconfig" ]] && break
  kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/kubeconfig" ]] || { echo "demo: the emulator wrote no kubeconfig" >&2; exit 1; }
export KUBECONFIG="$WORK/kubeconfig"
API_SERVER=$(sed -n 's/^ *server: *//p' "$KUBECONFIG" | head -n1)
echo "    API server: $API_SERVER"
CTL="$BIN/e2e-ctl"
# What the cluster publishes in /.well-known/openid-configuration (its keys: /openid/v1/jwks).
ISSUER=$("$CTL" issuer)
echo "    service-account issuer: $ISSUER"

step "installing CRDs: TenantIdentity, Flux GitRepository/Kustomization/HelmRelease, ASO FederatedIdentityCredential/UserAssignedIdentity"
"$CTL" install-crds
echo "    all Established"

step "simulating Azure: starting fake-arm (ARM + Entra token endpoint, Azure DevOps Git endpoint, on 127.0.0.1)"
# The operator's own identity (AZURE_CLIENT_ID below) is a caller the fake Entra trusts: its
# projected token is a placeholder, not a token the fake could verify against an issuer. The
# tenants' tokens are verified like Entra does: the fake fetches the issuer's discovery document
# and keys, here from the emulator over plain http (Entra would fetch them from the issuer URL).
OPERATOR_CLIENT_ID=5b0e6c8a-3f1d-4e2b-9a7c-1d2e3f4a5b6c
"$BIN/fake-arm" --listen 127.0.0.1:0 --url-out "$WORK/fake-arm-url" \
  --devops-url-out "$WORK/fake-devops-url" \
  --trusted-client-id "$OPERATOR_CLIENT_ID" \
  --insecure-issuer "$ISSUER=$API_SERVER" >"$WORK/fake-arm.log" 2>&1 &
FAKE_ARM_PID=$!
for _ in $(seq 100); do
  [[ -s "$WORK/fake-arm-url" && -s "$WORK/fake-devops-url" ]] && break
  kill -0 "$FAKE_ARM_PID" 2>/dev/null || { cat "$WORK/fake-arm.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/fake-arm-url" && -s "$WORK/fake-devops-url" ]] || { echo "demo: fake-arm wrote no URLs" >&2; exit 1; }
ARM_URL=$(cat "$WORK/fake-arm-url")
DEVOPS_URL=$(cat "$WORK/fake-devops-url")
echo "    ARM endpoint and authority host: $ARM_URL"
echo "    Azure DevOps endpoint (for https://dev.azure.com): $DEVOPS_URL"
# The user-assigned identities the examples name, with the client ids the examples give
# (credentials are only written to the identity whose client id is spec.azure.clientId):
# payments' (ARM backend) and team-b's (ASO owner.armId, checked through ARM).
ARM_IDENTITY=(11111111-2222-4333-8444-555555555555 rg-tenants id-payments)
TEAM_B_CLIENT_ID=9c8b7a65-4321-4fed-8cba-0987654321ab
"$CTL" fake-arm-identity "$ARM_URL" "${ARM_IDENTITY[@]}" --client-id 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d | sed 's/^/    /'
"$CTL" fake-arm-identity "$ARM_URL" 11111111-2222-4333-8444-555555555555 rg-tenants id-team-b \
  --client-id "$TEAM_B_CLIENT_ID" | sed 's/^/    /'
# What the AKS workload identity webhook gives the operator's pod: a projected service-account
# token file plus AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE.
printf 'eyJhbGciOiJSUzI1NiJ9.demo-projected-service-account-token.%s' "$RANDOM$RANDOM" >"$WORK/azure-identity-token"
# team-b's Flux source (examples/gitops-flux.yaml): the repository exists, but team-b's identity
# is not a member of the contoso organization yet.
"$CTL" fake-devops-repository "$ARM_URL" contoso platform team-b | sed 's/^/    /'

step "starting tenant-identity-operator (ARM backend: its own workload identity against the fake ARM; verification against the fake Entra and Azure DevOps)"
# --verify-grace=0s: the fakes hold a credential the moment it is written, so a refusal is
# reported as what it is at once (against Azure keep the default: Entra takes a while).
METRICS_PORT=$(( 20000 + RANDOM % 20000 ))
RUST_LOG=info \
AZURE_CLIENT_ID="$OPERATOR_CLIENT_ID" \
AZURE_TENANT_ID=72f988bf-86f1-41af-91ab-2d7cd011db47 \
AZURE_FEDERATED_TOKEN_FILE="$WORK/azure-identity-token" \
"$BIN/tenant-identity-operator" run \
  --metrics-bind-address "127.0.0.1:$METRICS_PORT" --log-format text \
  --arm-endpoint "$ARM_URL" --authority-host "$ARM_URL/" \
  --azure-devops-endpoint "$DEVOPS_URL" --verify-grace=0s >"$WORK/operator.log" 2>&1 &
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

step "simulating Azure Service Operator for team-a (creating its credential in Entra and marking it Ready, as ASO would); the operator verifies it"
"$CTL" converge --fake-arm "$ARM_URL" 60 vcluster-team-a/team-a

step "the ARM backend needs no simulation: the operator writes payments' credentials through ARM itself, then verifies them"
"$CTL" wait-ready 60 vcluster-payments/payments

step "team-b: ASO creates its credentials; the operator checks Azure DevOps as team-b's Flux identity, which is not in the contoso organization yet"
"$CTL" wait-condition --play-aso "$ARM_URL" 60 vcluster-team-b/team-b GitAccessVerified False GitAccessDenied

step "the platform team adds team-b's identity to the contoso Azure DevOps organization (nothing is restarted or edited)"
"$CTL" fake-devops-member "$ARM_URL" contoso "$TEAM_B_CLIENT_ID" | sed 's/^/    /'

step "the operator re-checks on its own (retries after 10 s, doubling): git access granted; Flux fetches the repository"
"$CTL" wait-condition 90 vcluster-team-b/team-b GitAccessVerified True GitAccessGranted
"$CTL" converge --fake-arm "$ARM_URL" 30 vcluster-team-b/team-b

step "what a user sees"
"$CTL" show

step "simulating Azure Resource Manager: the federated credentials of id-payments, as Azure holds them"
"$CTL" fake-arm-credentials "$ARM_URL" "${ARM_IDENTITY[@]}"
echo "    ARM requests by the operator (from its /metrics):"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^tenant_identity_azure_requests_total' | sed 's/^/      /' || true

step "done; stopping the operator, the fake ARM and the emulator"
