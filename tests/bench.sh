#!/usr/bin/env bash
# Benchmark: start a release mcp-edge (dev profile, rate limits raised) and drive
# tools/call over HTTPS with `mcp-edge bench` in session and stateless mode.
# Usage: tests/bench.sh [concurrency ...]   (default: 16 64)
# Prints one result line per mode and concurrency. Not part of the test suite: timings
# on a shared machine are noisy; compare numbers taken in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/mcp-edge
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp tests/bench/corpus.md.in "$work/README.md" && cp -r config "$work/"
port=${BENCH_PORT:-18943}
# exec: $! is the server itself, so the trap stops it.
(cd "$work" && exec env MCP_PORT="$port" MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 \
  MCP_MAX_SESSIONS_PER_PRINCIPAL=1000 MCP_LOG_LEVEL=warn \
  TMPDIR="$work" "$OLDPWD/$bin" serve >/dev/null 2>"$work/server.log") &
pid=$!
for _ in $(seq 100); do
  grep -q 'API key:' "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
export MCP_BENCH_KEY=$(grep -o 'mcp-dev-[0-9a-f]*' "$work/server.log" | head -1)
[ -n "$MCP_BENCH_KEY" ] || { cat "$work/server.log"; exit 1; }
for c in "${@:-16 64}"; do
  for c1 in $c; do
    for mode in session stateless; do
      "$bin" bench --url "https://localhost:$port/mcp" --ca-file "$work/mcp-edge-dev-cert.pem" \
        --mode "$mode" --concurrency "$c1" --duration "${BENCH_DURATION:-10s}" \
        --args '{"query":"rate limits"}'
    done
  done
done
