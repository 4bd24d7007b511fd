#!/usr/bin/env bash
# Benchmark for several replicas (issue 9): in one run, on loopback,
#   1. tools/call straight to 1 replica vs through HAProxy (mode tcp, PROXY v2) to 3
#      replicas sharing Redis;
#   2. the extra latency of a forwarded call (session owned by replica A, calls sent to
#      replica B) vs a local one;
#   3. the Redis limiter vs the local one (same replica set-up, store=redis vs local).
# Needs redis-server and haproxy (Debian packages; .ci/run installs them).
# Usage: tests/bench-replicas.sh [concurrency]   (default 16; BENCH_DURATION=5s,
# BENCH_ROUNDS=5). Pairs that are compared run alternately, round after round, and the
# medians are compared: on a shared 2-core machine one 10 s sample of each varied by
# ±25 %, more than the differences measured.
# Not part of the test suite: compare the ratios of one run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/mcp-edge
c=${1:-16}
duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-5}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

"$bin" init-secrets --dir "$work/secrets" --redis-dir "$work/redis" --hostnames localhost >/dev/null
key_file=$work/secrets/admin_api_key
ca=$work/secrets/tls_cert

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --requirepass "$(cat "$work/redis/redis_password")" >/dev/null &
pids+=($!)
wait_port "$redis_port"

mkdir -p "$work/docs" "$work/logs"
# A small, fixed corpus: the figures measure the edge and the replicas, not the search
# over a large document (search_docs over the 66 kB README alone takes ~11 ms a call).
for topic in "rate limits" "sessions" "TLS certificates" "replicas and Redis"; do
  printf '# %s\n\nNotes on %s at the edge: limits, sessions, keys and TLS.\n' \
    "$topic" "$topic" >"$work/docs/${topic// /-}.md"
done
# start_edge NAME STORE [PROXY_FROM]: prints "port peer_port".
start_edge() {
  local name=$1 store=$2 proxy_from=${3:-}
  local port peer
  port=$(free_port); peer=$(free_port)
  (cd "$work" && exec env -i PATH="$PATH" HOME="$work" \
    MCP_HOST=127.0.0.1 MCP_PORT="$port" MCP_PUBLIC_HOSTNAMES=localhost \
    MCP_TLS_CERT_FILE="$work/secrets/tls_cert" MCP_TLS_KEY_FILE="$work/secrets/tls_key" \
    MCP_API_KEYS_FILE="$work/secrets/api_keys" MCP_DOCS_DIR="$work/docs" \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s \
    MCP_PROTOCOL_BURST=1000000 MCP_MAX_SESSIONS_PER_PRINCIPAL=1000 \
    MCP_METRICS_MODE=off MCP_LOG_LEVEL=warn \
    MCP_PEER_LISTEN=127.0.0.1:"$peer" MCP_SESSION_KEYS_FILE="$work/secrets/session_keys" \
    MCP_RATE_LIMIT_STORE="$store" MCP_REDIS_URL=redis://127.0.0.1:"$redis_port" \
    MCP_REDIS_PASSWORD_FILE="$work/redis/redis_password" MCP_REPLICAS=3 \
    ${proxy_from:+MCP_PROXY_PROTOCOL_FROM=$proxy_from} \
    "$bin" serve >/dev/null 2>"$work/logs/$name.log") &
  pids+=($!)
  wait_port "$port"
  echo "$port"
}

bench() { # label url [extra args]: prints the bench line, appends it to $work/<label>
  local label=$1 url=$2; shift 2
  local line
  line=$("$bin" bench --url "$url" --ca-file "$ca" --key-file "$key_file" \
    --duration "$duration" --args '{"query":"rate limits"}' --concurrency "${conc:-$c}" "$@" 2>/dev/null \
    | tail -1)
  printf '%-44s %s\n' "$label" "$line"
  echo "$line" >>"$work/samples-${label//[^a-zA-Z0-9]/_}"
}
# median LABEL FIELD: the median of one field (rps, p50, p99) over the label's rounds.
median() {
  grep -o "$2=[0-9.]*" "$work/samples-${1//[^a-zA-Z0-9]/_}" | cut -d= -f2 | sort -g \
    | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}

# 1. One replica, local limiter; another with the Redis limiter (nothing else differs).
local1=$(start_edge local1 local)
redis1=$(start_edge redis1 redis)
# 2. Three replicas behind HAProxy (PROXY v2 from 127.0.0.5, the only trusted source).
r1=$(start_edge r1 redis 127.0.0.5/32)
r2=$(start_edge r2 redis 127.0.0.5/32)
r3=$(start_edge r3 redis 127.0.0.5/32)
lb=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend edge
    bind 127.0.0.1:$lb
    default_backend edges
backend edges
    balance roundrobin
    server r1 127.0.0.1:$r1 source 127.0.0.5 send-proxy-v2
    server r2 127.0.0.1:$r2 source 127.0.0.5 send-proxy-v2
    server r3 127.0.0.1:$r3 source 127.0.0.5 send-proxy-v2
EOF
haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>&1 &
pids+=($!)
wait_port "$lb"
# 3. Two replicas that are not behind a PROXY-sending balancer, for the forwarded call.
fa=$(start_edge fa local)
fb=$(start_edge fb local)

echo "mcp-edge replicas benchmark: session-mode tools/call search_docs, c=$c, $rounds rounds of $duration, $(nproc) cores"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
L1="1 replica, direct, local limiter"; R1="1 replica, direct, Redis limiter"
H3="3 replicas via HAProxy (tcp, PROXY v2), Redis"; H3S="3 replicas via HAProxy, Redis, stateless"
for round in $(seq "$rounds"); do
  echo "-- round $round"
  # Alternate which of a pair goes first: the second of a pair measured lower by
  # several points on this machine, whichever it was.
  if (( round % 2 )); then
    bench "$L1" "https://localhost:$local1/mcp"; bench "$R1" "https://localhost:$redis1/mcp"
  else
    bench "$R1" "https://localhost:$redis1/mcp"; bench "$L1" "https://localhost:$local1/mcp"
  fi
  bench "$H3" "https://localhost:$lb/mcp"
  bench "$H3S" "https://localhost:$lb/mcp" --mode stateless
  for conc in 1 "$c"; do
    owner() { bench "owner c=$conc" "https://localhost:$fb/mcp"; }
    forwarded() { bench "forwarded c=$conc" "https://localhost:$fb/mcp" --calls-url "https://localhost:$fa/mcp"; }
    if (( round % 2 )); then owner; forwarded; else forwarded; owner; fi
  done
done
echo "load after: $(uptime | sed 's/.*load average/load average/')"
echo "== medians over $rounds rounds"
for label in "$L1" "$R1" "$H3" "$H3S" "owner c=1" "forwarded c=1" "owner c=$c" "forwarded c=$c"; do
  printf '%-44s rps=%s p50=%sms p99=%sms\n' "$label" "$(median "$label" rps)" \
    "$(median "$label" p50)" "$(median "$label" p99)"
done
# Paired: each round's Redis figure over the same round's local one, then the median.
samples() { grep -o "$2=[0-9.]*" "$work/samples-${1//[^a-zA-Z0-9]/_}" | cut -d= -f2; }
paste <(samples "$R1" rps) <(samples "$L1" rps) | awk '{print 100 * $1 / $2}' | sort -g \
  | awk '{v[NR]=$1; all = all sprintf(" %.0f", $1)} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
    printf "Redis limiter / local limiter throughput: %.1f %% (median of rounds:%s; target >= 85 %%)\n", m, all}'
for conc in 1 "$c"; do
  awk -v f="$(median "forwarded c=$conc" p50)" -v o="$(median "owner c=$conc" p50)" -v c="$conc" \
    'BEGIN {printf "forwarded call, extra p50 at c=%s: %.2f ms (target < 1 ms at c=1)\n", c, f-o}'
done
echo "server log lines (warnings and errors): $(cat "$work"/logs/*.log | wc -l)"
