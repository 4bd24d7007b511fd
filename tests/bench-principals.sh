#!/usr/bin/env bash
# Backends per person (issue 24): what a child per principal costs against one shared pool.
# In one run, on loopback, two edges (release build) fronting the same cheap stdio server
# (tests/python/tiny_server.py, `echo`), both with BENCH_PRINCIPALS_MAX API keys:
#   pool       share = "all"  (one pool of proxy.pool_size = 4 children for everybody:
#                              the behaviour before issue 24)
#   principal  share = "none" (the default: each principal's stateless calls reach that
#                              principal's own child)
# For 1, 16 and 64 principals (wrk signs each request with the next principal's key),
# stateless tools/call at concurrency BENCH_C, alternating pool / principal round after
# round; prints calls/s and p50/p99 per round and the median ratio principal/pool, the
# edge's CPU per call, then the children each edge runs and the RSS of one principal
# child. Last, one principal holding BENCH_SESSIONS sessions: children and their RSS with
# share = "none" (a child per session) and share = "principal" (one child).
# Target (issue 24): with one principal, principal/pool within 5 %.
# Usage: tests/bench-principals.sh
#   MCP_EDGE_BIN=path  use this binary (default: cargo build --release)
#   BENCH_DURATION=5s  each measured run      BENCH_ROUNDS=3   alternating rounds
#   BENCH_C=16         wrk connections       BENCH_SESSIONS=20
# Not part of the test suite: compare the ratios of one run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ -n "${MCP_EDGE_BIN:-}" ]; then
  bin=$(realpath "$MCP_EDGE_BIN")
else
  cargo build --release --quiet --bin mcp-edge
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/mcp-edge
fi
for tool in wrk python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "bench-principals: $tool is not installed" >&2; exit 1; }
done
duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-3}
c=${BENCH_C:-16}
nsessions=${BENCH_SESSIONS:-20}
max=64
export WRK_LUA_DIR=$repo/tests/bench WRK_MCP_NAME=echo WRK_ARGS='{"text":"hi"}'

work=$(mktemp -d)
pids=()
# shellcheck source=tests/bench/lib.sh
source "$repo/tests/bench/lib.sh"
children_of() { pgrep -P "$1" || true; }

mkdir -p "$work/secrets"
make_tls "$work/secrets"
keys=()
for i in $(seq -w 1 $max); do
  k=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  keys+=("$k")
  echo "person$i $k" >>"$work/secrets/api_keys"
done

# start_edge NAME SHARE: sets port[NAME], pid[NAME], ca[NAME].
declare -A PORT PID CA
start_edge() {
  local name=$1 share=$2 dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/edge.toml" <<TOML
[[backends]]
name = "tiny"
command = ["python3", "$repo/tests/python/tiny_server.py"]
share = "$share"
TOML
  local port
  port=$(free_port)
  (cd "$dir" && exec env MCP_EDGE_CONFIG="$dir/edge.toml" MCP_PORT="$port" \
    MCP_TLS_MODE=files MCP_TLS_CERT_FILE="$work/secrets/cert.pem" MCP_TLS_KEY_FILE="$work/secrets/key.pem" \
    MCP_API_KEYS_FILE="$work/secrets/api_keys" MCP_METRICS_LISTEN=127.0.0.1:0 \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 \
    MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 \
    MCP_MAX_SESSIONS_PER_PRINCIPAL=1000 MCP_POOL_IDLE_TIMEOUT=1h MCP_SESSION_IDLE_TIMEOUT=1h \
    MCP_LOG_LEVEL=warn TMPDIR="$dir" "$bin" serve >/dev/null 2>"$dir/server.log") &
  PID[$name]=$!
  pids+=("$!")
  PORT[$name]=$port
  CA[$name]=$work/secrets/ca.pem
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "${CA[$name]}" "https://localhost:$port/health" && return
    sleep 0.1
  done
  cat "$dir/server.log" >&2
  exit 1
}

declare -A RPS P50 P99 CPU
# run NAME PRINCIPALS ROUND
run() {
  local name=$1 n=$2 r=$3 out line t0
  export WRK_KEYS
  WRK_KEYS=$(IFS=,; echo "${keys[*]:0:$n}")
  local url="https://localhost:${PORT[$name]}/mcp"
  # Every principal's child started before measuring (a spawn is not a call's cost).
  for k in "${keys[@]:0:$n}"; do
    curl -s -o /dev/null --cacert "${CA[$name]}" "$url" -H "Authorization: Bearer $k" \
      -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
      -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: echo' \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"w","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
  done
  wrk -t2 -c"$c" -d2s --timeout 10s -s "$WRK_LUA_DIR/principals.lua" "$url" >/dev/null 2>&1 || true
  out=$work/wrk-$name-$n-$r.log
  t0=$(cpu_ticks "${PID[$name]}")
  wrk -t2 -c"$c" -d"$duration" --timeout 10s -s "$WRK_LUA_DIR/principals.lua" "$url" >"$out" 2>&1 || {
    cat "$out" >&2
    exit 1
  }
  line=$(grep '^WRK_RESULT' "$out") || { cat "$out" >&2; exit 1; }
  [ "$(field failed "$line")" = 0 ] || { echo "bench-principals: failed calls ($name, $n principals)" >&2; cat "$out" >&2; exit 1; }
  local k="$name|$n|$r"
  RPS[$k]=$(field rps "$line") P50[$k]=$(field p50_us "$line") P99[$k]=$(field p99_us "$line")
  CPU[$k]=$(awk -v t="$(($(cpu_ticks "${PID[$name]}") - t0))" -v hz="$(getconf CLK_TCK)" \
    -v n="$(field requests "$line")" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')
  printf '| %s | %d | %d | %.0f | %.2f ms | %.2f ms | %s µs |\n' "$name" "$n" "$r" "${RPS[$k]}" \
    "$(awk -v u="${P50[$k]}" 'BEGIN { print u / 1000 }')" "$(awk -v u="${P99[$k]}" 'BEGIN { print u / 1000 }')" "${CPU[$k]}"
}

echo "bench-principals: binary $bin"
echo "bench-principals: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stateless tools/call echo (tiny_server.py), wrk -t2 -c$c, $duration per run, $rounds alternating rounds"
start_edge pool all
start_edge principal none
echo
echo "| edge | principals | round | calls/s | p50 | p99 | edge CPU per call |"
echo "|---|---|---|---|---|---|---|"
for n in 1 16 64; do
  for r in $(seq "$rounds"); do
    run pool "$n" "$r"
    run principal "$n" "$r"
  done
done
echo
echo "| principals | calls/s pool (median) | calls/s principal (median) | principal/pool | CPU per call pool / principal |"
echo "|---|---|---|---|---|"
for n in 1 16 64; do
  pr=$(for r in $(seq "$rounds"); do echo "${RPS[pool|$n|$r]}"; done | median)
  pp=$(for r in $(seq "$rounds"); do echo "${RPS[principal|$n|$r]}"; done | median)
  cr=$(for r in $(seq "$rounds"); do echo "${CPU[pool|$n|$r]}"; done | median)
  cp=$(for r in $(seq "$rounds"); do echo "${CPU[principal|$n|$r]}"; done | median)
  printf '| %d | %.0f | %.0f | %.2f | %s / %s µs |\n' "$n" "$pr" "$pp" "$(awk -v a="$pp" -v b="$pr" 'BEGIN { print a / b }')" "$cr" "$cp"
done
echo
for name in pool principal; do
  kids=$(children_of "${PID[$name]}")
  total=0
  for k in $kids; do total=$((total + $(rss_kb "$k"))); done
  count=$(wc -w <<<"$kids")
  printf '%s edge: %d children, %.1f MB in all' "$name" "$count" "$(awk -v t="$total" 'BEGIN { print t / 1024 }')"
  [ "$count" = 0 ] || printf ', %.1f MB per child' "$(awk -v t="$total" -v n="$count" 'BEGIN { print t / n / 1024 }')"
  printf '; edge RSS %.1f MB\n' "$(awk -v t="$(rss_kb "${PID[$name]}")" 'BEGIN { print t / 1024 }')"
done
kill "${PID[pool]}" "${PID[principal]}" 2>/dev/null || true
wait "${PID[pool]}" "${PID[principal]}" 2>/dev/null || true

# --- one person, many sessions ---------------------------------------------------------
echo
echo "## one principal holding $nsessions sessions (initialize + notifications/initialized + one tools/call each)"
open_sessions() { # NAME
  python3 - "${PORT[$1]}" "${CA[$1]}" "${keys[0]}" "$nsessions" <<'PY'
import json, ssl, sys, http.client
port, ca, key, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
held = []
for i in range(n):
    c = http.client.HTTPSConnection("localhost", port, context=ctx)
    h = {"Authorization": "Bearer " + key, "Content-Type": "application/json",
         "Accept": "application/json, text/event-stream"}
    c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}), h)
    r = c.getresponse(); sid = r.getheader("mcp-session-id"); r.read()
    assert r.status == 200 and sid, r.status
    h["Mcp-Session-Id"] = sid
    h["MCP-Protocol-Version"] = "2025-06-18"
    c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), h)
    r = c.getresponse(); r.read()
    c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"}}}), h)
    r = c.getresponse(); body = r.read()
    assert r.status == 200 and b'"result"' in body, body
    held.append(c)
PY
}
for share in none principal; do
  start_edge "sessions-$share" "$share"
  open_sessions "sessions-$share"
  kids=$(children_of "${PID[sessions-$share]}")
  total=0
  for k in $kids; do total=$((total + $(rss_kb "$k"))); done
  printf 'share = "%s": %d children, %.1f MB of children in all\n' "$share" "$(wc -w <<<"$kids")" \
    "$(awk -v t="$total" 'BEGIN { print t / 1024 }')"
  kill "${PID[sessions-$share]}" 2>/dev/null || true
  wait "${PID[sessions-$share]}" 2>/dev/null || true
done
