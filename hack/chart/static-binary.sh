#!/usr/bin/env bash
# Build tenant-identity-operator as a static binary the way the Dockerfile does (gnu target,
# static C runtime, rustls + ring, no OpenSSL) and check it: no ELF interpreter, no shared-library
# dependency, no OpenSSL symbols, and it runs (`--help`, `crd`) with an empty environment.
# CI runs this because there is no Docker engine to build the image itself.
#
#   hack/chart/static-binary.sh            # debug profile (faster; same linking as release)
#   hack/chart/static-binary.sh --release  # what the image ships
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PROFILE=debug
ARGS=()
if [ "${1:-}" = "--release" ]; then PROFILE=release; ARGS+=(--release); fi
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# --target keeps RUSTFLAGS away from build scripts and proc macros (they must stay dynamic).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --quiet --locked "${ARGS[@]}" -p tenant-identity-operator --bin tenant-identity-operator --target "$TRIPLE"
BIN=$TARGET/$TRIPLE/$PROFILE/tenant-identity-operator

fail() { echo "static-binary: FAIL: $*" >&2; exit 1; }
python3 - "$BIN" <<'PY' || fail "$BIN is dynamically linked"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF"
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
PT_DYNAMIC, PT_INTERP = 2, 3
if PT_INTERP in types:
    sys.exit("has a PT_INTERP program header (needs a dynamic loader)")
if PT_DYNAMIC in types:
    # static-pie keeps a PT_DYNAMIC for relocations; it must list no DT_NEEDED libraries.
    i = types.index(PT_DYNAMIC)
    off, = struct.unpack_from("<Q", data, phoff + i * phentsize + 8)
    size, = struct.unpack_from("<Q", data, phoff + i * phentsize + 32)
    for k in range(0, size, 16):
        tag, = struct.unpack_from("<q", data, off + k)
        if tag == 0:
            break
        if tag == 1:
            sys.exit("has DT_NEEDED shared-library dependencies")
PY
if grep -qa 'OPENSSL_init_ssl\|libssl.so' "$BIN"; then fail "$BIN links OpenSSL"; fi
env -i "$BIN" --help >/dev/null || fail "$BIN --help"
env -i "$BIN" crd | grep -q 'kind: CustomResourceDefinition' || fail "$BIN crd"
echo "static-binary: $BIN is static ($(du -h "$BIN" | cut -f1))"
echo "static-binary: 1 passed, 0 failed"
