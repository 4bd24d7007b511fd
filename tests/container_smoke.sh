#!/usr/bin/env bash
# Container smoke test without a container engine: build the binary exactly as the
# Dockerfile does, check it is statically linked, and run it the way the image runs it:
# in a root directory holding only the binary (like distroless/static), as uid 65532,
# with a read-only config, secrets under run/secrets, and the `healthcheck` subcommand
# as the probe. Needs root for chroot/setpriv; without root it runs the same steps
# unconfined and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
echo "== build: RUSTFLAGS=-C target-feature=+crt-static cargo build --profile container --locked --target $TARGET"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --profile container --locked --target x86_64-unknown-linux-gnu --bin mcp-edge
BIN="target/$TARGET/container/mcp-edge"

echo "== static linking"
file "$BIN"
file "$BIN" | grep -Eq "statically linked|static-pie linked" || { echo "not statically linked"; exit 1; }
if ldd "$BIN" 2>&1 | grep -q "=>"; then echo "dynamic dependencies:"; ldd "$BIN"; exit 1; fi
SIZE=$(stat -c %s "$BIN")
# distroless/static-debian12 is about 2 MiB (the distroless project's figure).
awk -v b="$SIZE" 'BEGIN { printf "binary: %d bytes (%.1f MB); image estimate with distroless/static (~2.1 MB): %.1f MB (target < 25 MB)\n", b, b / 1e6, b / 1e6 + 2.1 }'
if (( SIZE > 22900000 )); then echo "binary too large for a < 25 MB image"; exit 1; fi

WORK=$(mktemp -d)
cleanup() {
    if [[ -n "${EDGE_PID:-}" ]] && kill -0 "$EDGE_PID" 2>/dev/null; then kill "$EDGE_PID" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The image's filesystem: the binary, the state folders owned by the runtime user, a
# docs folder; Docker adds /etc/hosts and /etc/resolv.conf at run time.
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/mcp-edge" "$ROOTFS/run/secrets" \
    "$ROOTFS/var/lib/mcp-edge/acme" "$ROOTFS/docs" "$ROOTFS/tmp"
cp "$BIN" "$ROOTFS/usr/local/bin/mcp-edge"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' > "$ROOTFS/etc/hosts"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
echo "# Smoke test" > "$ROOTFS/docs/index.md"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$ROOTFS/etc/mcp-edge/edge.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
[tls]
cert_file = "/run/secrets/tls_cert"
key_file = "/run/secrets/tls_key"
[auth]
api_keys_file = "/run/secrets/api_keys"
[docs]
dir = "/docs"
[log]
format = "json"
[metrics]
admin_listen = "127.0.0.1:$ADMIN"
TOML
chmod 0444 "$ROOTFS/etc/mcp-edge/edge.toml"

UID_GID=65532
if [[ $(id -u) -eq 0 ]] && command -v setpriv >/dev/null && command -v chroot >/dev/null; then
    chown "$UID_GID:$UID_GID" "$ROOTFS/run/secrets" "$ROOTFS/var/lib/mcp-edge/acme"
    # The device nodes every container gets (Docker creates these in /dev).
    mkdir -p "$ROOTFS/dev"
    mknod -m 666 "$ROOTFS/dev/null" c 1 3
    mknod -m 666 "$ROOTFS/dev/zero" c 1 5
    mknod -m 666 "$ROOTFS/dev/random" c 1 8
    mknod -m 666 "$ROOTFS/dev/urandom" c 1 9
    chmod 1777 "$ROOTFS/tmp"
    # As the image runs: root directory = the image's files, USER 65532, no new
    # privileges. chroot needs CAP_SYS_CHROOT, so chroot first, then switch user (which
    # clears every capability).
    CONFINE=("$(command -v setpriv)" --no-new-privs --inh-caps=-all
        "$(command -v chroot)" --userspec="$UID_GID:$UID_GID" "$ROOTFS")
    MODE="chroot + setpriv (uid $UID_GID, no new privileges, no capabilities)"
    CONFINED=1
else
    MODE="unconfined (not root: no chroot/setpriv); paths under $ROOTFS"
    CONFINED=0
fi
echo "== run mode: $MODE"

if [[ $CONFINED -eq 1 ]]; then
    P="" # paths inside the chroot
    EDGE=("${CONFINE[@]}" /usr/local/bin/mcp-edge)
else
    P="$ROOTFS"
    EDGE=("$ROOTFS/usr/local/bin/mcp-edge")
    sed -i "s#\"/#\"$ROOTFS/#g" "$ROOTFS/etc/mcp-edge/edge.toml"
fi

echo "== init-secrets (as the compose file's secrets-init service does)"
"${EDGE[@]}" init-secrets --dir "$P/run/secrets" --hostnames localhost
ls -ln "$ROOTFS/run/secrets"
test "$(stat -c %a "$ROOTFS/run/secrets/api_keys")" = 400
# The running edge sees the secrets read-only, as a mounted secret.
chmod 0555 "$ROOTFS/run/secrets"

echo "== serve (config read-only, secrets under run/secrets)"
ENV=(env -i MCP_EDGE_CONFIG="$P/etc/mcp-edge/edge.toml" MCP_SHUTDOWN_GRACE=2s)
"${ENV[@]}" "${EDGE[@]}" serve > "$WORK/edge.log" 2>&1 &
EDGE_PID=$!

echo "== healthcheck subcommand as the probe (Docker HEALTHCHECK)"
ok=0
for _ in $(seq 1 50); do
    if "${ENV[@]}" "${EDGE[@]}" healthcheck --timeout 2s >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
done
if [[ $ok -ne 1 ]]; then echo "never healthy:"; cat "$WORK/edge.log"; exit 1; fi
"${ENV[@]}" "${EDGE[@]}" healthcheck --timeout 2s
# By name: resolved through the image's /etc/hosts by the static binary.
"${ENV[@]}" "${EDGE[@]}" healthcheck --timeout 2s --url "https://localhost:$PORT/health"
echo "healthy"

echo "== the process runs as uid $UID_GID"
if [[ $CONFINED -eq 1 ]]; then
    RUID=$(awk '/^Uid:/ {print $2}' "/proc/$EDGE_PID/status")
    CAPS=$(awk '/^CapEff:/ {print $2}' "/proc/$EDGE_PID/status")
    echo "effective capabilities: $CAPS"
    test "$CAPS" = 0000000000000000
    echo "uid: $RUID"
    test "$RUID" = "$UID_GID"
fi

echo "== an MCP call with the generated key"
KEY=$(cat "$ROOTFS/run/secrets/admin_api_key")
CODE=$(curl -sk -o "$WORK/init.out" -w '%{http_code}' "https://127.0.0.1:$PORT/mcp" \
    -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"1"}}}')
test "$CODE" = 200 || { echo "initialize: $CODE"; cat "$WORK/init.out"; exit 1; }
grep -q '"serverInfo"' "$WORK/init.out"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -q 'mcp_edge_http_requests_total{route="/mcp",status="200"}'
if grep -q "$KEY" "$WORK/edge.log"; then echo "the key leaked into the log"; exit 1; fi

echo "== SIGTERM: graceful exit 0"
kill -TERM "$EDGE_PID"
wait "$EDGE_PID"
echo "exit: $?"
EDGE_PID=
echo "container smoke test passed ($MODE)"
