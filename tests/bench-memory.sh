#!/usr/bin/env bash
# Memory benchmark: does the edge give back what a burst of sessions took once they end?
# Issue 23: most clients never DELETE their session, so a burst leaves it to the idle
# timeout, and the edge must not stay at its peak afterwards. In one run:
#   1. a fresh edge (release build, dev profile: the built-in docs backend, an API key,
#      rate limits raised, sessions.idle_timeout = BENCH_IDLE_TIMEOUT): idle RSS after
#      10 warm-up requests;
#   2. BENCH_ROUNDS bursts of BENCH_SESSIONS sessions (initialize 2025-06-18 +
#      notifications/initialized + one tools/call search_docs each, never DELETE), each
#      left to expire: RSS at the burst's peak, when mcp_edge_live_sessions is back to 0,
#      and each second after that for BENCH_SETTLE seconds; the time until RSS is back
#      within 15 MB of idle;
#   3. a fresh edge holding BENCH_KEEP sessions (initialize + notifications/initialized,
#      kept open, as tests/bench-path.sh section 5): the cost of one idle session.
# Targets (issue 23): RSS within 15 MB of idle within 60 s of the burst's expiry; idle RSS
# and the cost per session not above the figures before the change (docs/src/benchmarks/memory.md).
# Usage: tests/bench-memory.sh
#   MCP_EDGE_BIN=path     use this binary (default: cargo build --release, target/release/mcp-edge)
#   BENCH_SESSIONS=1000   sessions per burst
#   BENCH_ROUNDS=6        bursts
#   BENCH_IDLE_TIMEOUT=5s the edge's sessions.idle_timeout
#   BENCH_SETTLE=60       seconds RSS is followed after the sessions are gone
#   BENCH_KEEP=10000      sessions held for the per-session cost (0 skips section 3)
# Prints figures; checks nothing but that every request succeeded (exit 1 otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ -n "${MCP_EDGE_BIN:-}" ]; then
  bin=$(realpath "$MCP_EDGE_BIN")
else
  cargo build --release --quiet --bin mcp-edge
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/mcp-edge
fi
[ -x "$bin" ] || { echo "bench-memory: no executable $bin" >&2; exit 1; }
for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench-memory: $tool is not installed" >&2; exit 1; }
done
nsessions=${BENCH_SESSIONS:-1000}
rounds=${BENCH_ROUNDS:-6}
idle_timeout=${BENCH_IDLE_TIMEOUT:-5s}
settle=${BENCH_SETTLE:-60}
keep=${BENCH_KEEP:-10000}
lua_dir=$repo/tests/bench

work=$(mktemp -d)
pids=()
# shellcheck source=tests/bench/lib.sh
source "$repo/tests/bench/lib.sh"
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
live_sessions() {
  curl -s "http://127.0.0.1:$edge_metrics/metrics" | awk '$1 == "mcp_edge_live_sessions" {print $2}'
}

# start_edge NAME [VAR=value ...]: sets edge_pid, edge_port, edge_metrics, edge_ca, key.
start_edge() {
  local name=$1
  shift
  local dir=$work/$name
  mkdir -p "$dir"
  cp tests/bench/corpus.md.in "$dir/README.md" && cp -r config "$dir/"
  edge_port=$(free_port)
  edge_metrics=$(free_port)
  # exec: $! is the server itself, so cleanup stops it.
  (cd "$dir" && exec env MCP_PORT="$edge_port" \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 \
    MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 \
    MCP_MAX_CONNECTIONS=100000 MCP_MAX_CONNECTIONS_PER_IP=100000 \
    MCP_METRICS_LISTEN=127.0.0.1:$edge_metrics MCP_LOG_LEVEL=warn "$@" \
    TMPDIR="$dir" "$bin" serve >/dev/null 2>"$dir/server.log") &
  edge_pid=$!
  pids+=("$edge_pid")
  for _ in $(seq 100); do
    grep -q 'mcp-dev-' "$dir/server.log" 2>/dev/null && break
    sleep 0.1
  done
  key=$(grep -o 'mcp-dev-[0-9a-f]*' "$dir/server.log" | head -1 || true)
  [ -n "$key" ] || { cat "$dir/server.log" >&2; exit 1; }
  edge_ca=$dir/mcp-edge-dev-cert.pem
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$edge_ca" "https://localhost:$edge_port/health" && break
    sleep 0.1
  done
  export MCP_BENCH_KEY=$key
}
stop_edge() {
  kill "$edge_pid" 2>/dev/null || true
  wait "$edge_pid" 2>/dev/null || true
}
open_sessions() { # count [args...]
  local n=$1
  shift
  python3 "$lua_dir/open_sessions.py" --port "$edge_port" --ca "$edge_ca" \
    --count "$n" --connections 4 "$@" 2>"$work/open.log" || { cat "$work/open.log" >&2; exit 1; }
}

echo "bench-memory: binary $bin"
echo "bench-memory: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1 + 2. bursts left to expire ---------------------------------------------------------
echo
echo "## bursts: $rounds x $nsessions sessions (initialize + one tools/call, never DELETE), sessions.idle_timeout = $idle_timeout"
start_edge bursts MCP_SESSION_IDLE_TIMEOUT="$idle_timeout" \
  MCP_MAX_SESSIONS=$((nsessions + 100)) MCP_MAX_SESSIONS_PER_PRINCIPAL=$((nsessions + 100))
python3 "$lua_dir/open_sessions.py" --port "$edge_port" --ca "$edge_ca" --warmup 5 2>/dev/null
sleep 1
idle=$(status_kb "$edge_pid" VmRSS)
echo "idle RSS: $(mb "$idle") MB (RssAnon $(mb "$(status_kb "$edge_pid" RssAnon)") MB, RssFile $(mb "$(status_kb "$edge_pid" RssFile)") MB)"
within=$((idle + 15 * 1024))
printf '| round | peak RSS | RSS at 0 sessions | RSS +%ss | RssAnon +%ss | back within 15 MB of idle |\n' "$settle" "$settle"
printf '|---|---|---|---|---|---|\n'
worst=0
for r in $(seq "$rounds"); do
  open_sessions "$nsessions" --call
  peak=$(status_kb "$edge_pid" VmRSS)
  [ "$r" != 1 ] || first_peak=$peak
  # Until the edge has forgotten every session (rmcp's idle timeout, then its sweep).
  for _ in $(seq 600); do
    [ "$(live_sessions)" = 0 ] && break
    sleep 0.2
  done
  [ "$(live_sessions)" = 0 ] || { echo "bench-memory: sessions still live after 120 s" >&2; exit 1; }
  at_zero=$(status_kb "$edge_pid" VmRSS)
  back=never
  [ "$at_zero" -gt "$within" ] || back=0
  for s in $(seq "$settle"); do
    sleep 1
    now=$(status_kb "$edge_pid" VmRSS)
    [ "$back" != never ] || [ "$now" -gt "$within" ] || back=$s
  done
  anon=$(status_kb "$edge_pid" RssAnon)
  [ "$back" != never ] || worst=1
  [ "$back" = never ] || back="${back} s"
  printf '| %d | %s MB | %s MB | %s MB | %s MB | %s |\n' "$r" "$(mb "$peak")" "$(mb "$at_zero")" \
    "$(mb "$now")" "$(mb "$anon")" "$back"
done
echo "per session in the first burst (peak - idle) / $nsessions: $(awk -v p="$first_peak" -v i="$idle" -v n="$nsessions" 'BEGIN { printf "%.1f", (p - i) / n }') KB"
if [ "$worst" = 0 ]; then
  echo "target (RSS within 15 MB of idle within ${settle} s of expiry, every round): met"
else
  echo "target (RSS within 15 MB of idle within ${settle} s of expiry, every round): MISSED"
fi
stop_edge

# --- 3. the cost of an idle session ---------------------------------------------------------
if [ "$keep" -gt 0 ]; then
  echo
  echo "## a fresh edge holding $keep sessions (initialize + notifications/initialized, kept open)"
  start_edge keep MCP_SESSION_IDLE_TIMEOUT=2h \
    MCP_MAX_SESSIONS=$((keep + 100)) MCP_MAX_SESSIONS_PER_PRINCIPAL=$((keep + 100))
  python3 "$lua_dir/open_sessions.py" --port "$edge_port" --ca "$edge_ca" --warmup 5 2>/dev/null
  sleep 1
  idle=$(status_kb "$edge_pid" VmRSS)
  open_sessions "$keep"
  sleep 1
  after=$(status_kb "$edge_pid" VmRSS)
  awk -v i="$idle" -v a="$after" -v n="$keep" 'BEGIN {
    printf "idle RSS %.1f MB; with %d sessions %.1f MB; per session %.1f KB\n", i / 1024, n, a / 1024, (a - i) / n
  }'
  stop_edge
fi
