# syntax=docker/dockerfile:1
#
# mcp-edge: a static binary on distroless/static, running as uid 65532, no shell.
#
#   docker build -t mcp-edge .
#   docker run -p 443:8443 -v ./secrets:/run/secrets:ro mcp-edge
#
# The binary is linked statically against glibc (+crt-static, the same command
# tests/container_smoke.sh builds and runs without an engine). glibc >= 2.34 has the
# `files` and `dns` name-service modules built in, so upstream names resolve from
# /etc/hosts and /etc/resolv.conf with no shared libraries in the image (checked by
# the smoke test in an empty root directory).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    RUSTFLAGS="-C target-feature=+crt-static"
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# An explicit --target keeps +crt-static off build scripts and proc macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile container --locked --target x86_64-unknown-linux-gnu --bin mcp-edge \
    && cp target/x86_64-unknown-linux-gnu/container/mcp-edge /mcp-edge
# Writable state (ACME cache, generated secrets) and the docs mount point, owned by the
# runtime user so named volumes mounted there inherit the ownership.
RUN mkdir -p /rootfs/var/lib/mcp-edge/acme /rootfs/var/lib/mcp-edge/secrets \
        /rootfs/var/lib/mcp-edge/upstream /rootfs/docs \
    && chmod 0700 /rootfs/var/lib/mcp-edge/acme /rootfs/var/lib/mcp-edge/secrets \
    && chown -R 65532:65532 /rootfs/var/lib/mcp-edge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /mcp-edge /usr/local/bin/mcp-edge
COPY --from=build /rootfs/ /
USER 65532:65532
ENV MCP_HOST=0.0.0.0 \
    MCP_PORT=8443 \
    MCP_LOG_FORMAT=json \
    MCP_DOCS_DIR=/docs \
    MCP_ACME_CACHE_DIR=/var/lib/mcp-edge/acme
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/mcp-edge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-edge"]
CMD ["serve"]
