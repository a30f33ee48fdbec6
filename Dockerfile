# syntax=docker/dockerfile:1.7
# tenant-identity-operator image: one static binary (rustls + ring, no OpenSSL, no libc at run time)
# on distroless/static, running as the distroless "nonroot" user 65532.
#
#   make image            # docker build -t ghcr.io/tenancy-dev/tenant-identity-operator:<version> .
#
# The binary is built for the gnu target with a static C runtime (`-C target-feature=+crt-static`),
# exactly as hack/chart/static-binary.sh does in CI (which has no Docker engine), so CI checks
# the same build. Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 .`

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
WORKDIR /src
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-gnu > /rust-target ;; \
      arm64) echo aarch64-unknown-linux-gnu > /rust-target; \
             apt-get update && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
             && rustup target add aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TERM_COLOR=never
COPY . .
# --target makes RUSTFLAGS apply to the operator only, not to build scripts and proc macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    T=$(cat /rust-target) \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p tenant-identity-operator --bin tenant-identity-operator --target "$T" \
 && cp "target/$T/release/tenant-identity-operator" /tenant-identity-operator
# Refuse a dynamically linked binary: distroless/static has no libc.
RUN if readelf -lW /tenant-identity-operator | grep -q 'Requesting program interpreter' \
      || readelf -dW /tenant-identity-operator | grep -q '(NEEDED)'; then \
      echo "tenant-identity-operator is not statically linked" >&2; exit 1; fi

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="tenant-identity-operator" \
      org.opencontainers.image.description="Kubernetes operator giving each vcluster tenant a Microsoft Entra workload identity" \
      org.opencontainers.image.source="https://github.com/tenancy-dev/tenant-identity-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /tenant-identity-operator /usr/local/bin/tenant-identity-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tenant-identity-operator"]
CMD ["run"]
