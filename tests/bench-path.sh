#!/usr/bin/env bash
# Request-path benchmark: how close the edge comes to the box's ceiling, and what a session
# costs in memory. In one run:
#   1. ceiling: nginx (Debian, started here: own temp prefix, 2 workers, access_log off, TLS
#      with an ECDSA P-256 certificate like the edge's dev one) answering `return 200 "ok"`;
#   2. the edge (release build, dev profile, rate limits raised): GET /health, stateless
#      (2026-07-28) tools/list, stateless tools/call search_docs {"query":"rate limits"},
#      session-mode (2025-06-18) tools/call spread over 64 sessions; each at every
#      concurrency given;
#   3. client check: stateless tools/call at c=64 with wrk and with
#      `mcp-edge bench --mode stateless --http1` (they should agree within ~20 %);
#   4. a markdown table of every figure and its ratio to nginx at the same concurrency;
#   5. memory: idle RSS of a fresh edge, then RSS with BENCH_SESSIONS open sessions and
#      the cost of one session;
#   3b. (between 3 and 4) the cost of the audit trail and of traces at sample_ratio 1.0;
#   3c. (with BENCH_STATUS=1) throughput with the status page open and polling.
# All load is wrk -t2 (HTTP/1.1 keep-alive over TLS) with Lua scripts from tests/bench/
# that check every response (status 200; JSON-RPC `result`, no `"error"`, no
# `"isError":true`); any failed response makes the script exit 1 after the table.
# Usage: tests/bench-path.sh [concurrency ...]   (default: 16 64)
#   MCP_EDGE_BIN=path   use this binary (default: cargo build --release, target/release/mcp-edge)
#   BENCH_DURATION=10s  each measured wrk / mcp-edge bench run
#   BENCH_WARMUP=1s     unmeasured run before each measured one ("0" to skip)
#   BENCH_SESSIONS=10000  sessions opened for the memory figure
#   BENCH_THREADS=2     wrk threads (-t)
#   BENCH_OTEL=0        skip the tracing / audit cost runs (3b)
#   BENCH_OBS_ROUNDS=3  alternating rounds of the 3b variants (their costs are medians)
#   BENCH_OBS_DURATION=5s  each 3b and 3c run
#   BENCH_STATUS=1      also 3c: throughput with the status page open and polling every
#                       second, as a ratio to the same edge with the page closed
# Not part of the test suite: timings on a shared 2-core machine (client and server on the
# same cores) are noisy; compare numbers taken in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ -n "${MCP_EDGE_BIN:-}" ]; then
  bin=$(realpath "$MCP_EDGE_BIN")
else
  cargo build --release --quiet
  bin=$repo/target/release/mcp-edge
fi
[ -x "$bin" ] || { echo "bench-path: no executable $bin" >&2; exit 1; }
for tool in wrk nginx openssl python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench-path: $tool is not installed" >&2; exit 1; }
done

duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-1s}
nsessions=${BENCH_SESSIONS:-10000}
threads=${BENCH_THREADS:-2}
call_sessions=64
check_c=64
read -r -a concs <<<"${*:-16 64}"
args_json='{"query":"rate limits"}'
export WRK_LUA_DIR=$repo/tests/bench

work=$(mktemp -d)
pids=()
# shellcheck source=tests/bench/lib.sh
source "$repo/tests/bench/lib.sh"
wait_https() { # url ca: until it answers (any status) or 10 s
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$2" "$1" && return 0
    sleep 0.1
  done
  echo "bench-path: $1 did not come up" >&2
  return 1
}

# --- the edge ------------------------------------------------------------------------
# start_edge NAME [VAR=value ...]: sets edge_pid, edge_port, edge_dir, edge_ca, key.
start_edge() {
  local name=$1
  shift
  edge_dir=$work/$name
  mkdir -p "$edge_dir"
  cp tests/bench/corpus.md.in "$edge_dir/README.md" && cp -r config "$edge_dir/"
  edge_port=$(free_port)
  edge_metrics=$(free_port)
  # exec: $! is the server itself, so cleanup stops it.
  (cd "$edge_dir" && exec env MCP_PORT="$edge_port" \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 \
    MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 \
    MCP_MAX_CONNECTIONS=100000 MCP_MAX_CONNECTIONS_PER_IP=100000 \
    MCP_SESSION_IDLE_TIMEOUT=2h MCP_METRICS_LISTEN=127.0.0.1:$edge_metrics MCP_LOG_LEVEL=warn "$@" \
    TMPDIR="$edge_dir" "$bin" serve >/dev/null 2>"$edge_dir/server.log") &
  edge_pid=$!
  pids+=("$edge_pid")
  for _ in $(seq 100); do
    grep -q 'mcp-dev-' "$edge_dir/server.log" 2>/dev/null && break
    sleep 0.1
  done
  key=$(grep -o 'mcp-dev-[0-9a-f]*' "$edge_dir/server.log" | head -1 || true)
  [ -n "$key" ] || { cat "$edge_dir/server.log" >&2; exit 1; }
  edge_ca=$edge_dir/mcp-edge-dev-cert.pem
  wait_https "https://localhost:$edge_port/health" "$edge_ca"
}
stop_edge() {
  kill "$edge_pid" 2>/dev/null || true
  wait "$edge_pid" 2>/dev/null || true
}

# --- wrk runs --------------------------------------------------------------------------
# Results by "target|c": rps, p50/p99 (µs), failed, requests.
declare -A RPS P50 P99 FAILED REQS CPU
rows=()
total_failed=0

# run_wrk TARGET C SCRIPT URL: one warm-up run (discarded) and one measured run.
run_wrk() {
  local target=$1 c=$2 script=$3 url=$4 out line t=$threads
  [ "$c" -ge "$t" ] || t=$c
  export WRK_THREADS=$t
  if [ "$warmup" != 0 ]; then
    wrk -t"$t" -c"$c" -d"$warmup" --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >/dev/null 2>&1 || true
  fi
  out=$work/wrk-$(echo "$target-$c" | tr -c 'a-zA-Z0-9-' _).log
  # With cpu_pid set: that process's CPU time (user + system) over the measured run.
  local ticks0=
  [ -z "${cpu_pid:-}" ] || ticks0=$(cpu_ticks "$cpu_pid")
  wrk -t"$t" -c"$c" -d"$duration" --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >"$out" 2>&1 || {
    cat "$out" >&2
    echo "bench-path: wrk failed for $target c=$c" >&2
    exit 1
  }
  line=$(grep '^WRK_RESULT' "$out") || { cat "$out" >&2; exit 1; }
  record "$target" "$c" \
    "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
    "$(field failed "$line")" "$(field requests "$line")"
  if [ -n "$ticks0" ]; then
    CPU["$target|$c"]=$(awk -v t="$(($(cpu_ticks "$cpu_pid") - ticks0))" -v hz="$(getconf CLK_TCK)" \
      -v n="$(field requests "$line")" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  fi
  grep '^wrk: first failed reply' "$out" >&2 || true
}
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
record() { # target c rps p50_us p99_us failed requests
  local k="$1|$2"
  RPS[$k]=$3 P50[$k]=$4 P99[$k]=$5 FAILED[$k]=$6 REQS[$k]=$7
  rows+=("$k")
  total_failed=$((total_failed + $6))
  printf '%-44s c=%-4s %9.0f req/s  p50 %9s  p99 %9s  failed %s of %s\n' \
    "$1" "$2" "$3" "$(ms "$4")" "$(ms "$5")" "$6" "$7"
}

echo "bench-path: binary $bin, wrk -t$threads, ${duration} per run (warm-up ${warmup}), concurrency ${concs[*]}"
echo "bench-path: machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. nginx ceiling ----------------------------------------------------------------------
ngx=$work/nginx
mkdir -p "$ngx"
ngx_port=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$ngx/key.pem" -out "$ngx/cert.pem" 2>/dev/null
sed -e "s|@DIR@|$ngx|g" -e "s|@PORT@|$ngx_port|g" "$WRK_LUA_DIR/nginx.conf.in" >"$ngx/nginx.conf"
nginx -p "$ngx" -c "$ngx/nginx.conf" 2>"$ngx/stderr.log" &
pids+=($!)
wait_https "https://localhost:$ngx_port/" "$ngx/cert.pem" || { cat "$ngx"/*.log >&2; exit 1; }
echo
echo "## 1. ceiling: nginx $(nginx -v 2>&1 | sed 's|.*/||'), TLS ECDSA P-256, return 200 \"ok\""
for c in "${concs[@]}"; do
  WRK_EXPECT_BODY=ok run_wrk "nginx static 200" "$c" get_ok.lua "https://localhost:$ngx_port/"
done
kill "$(cat "$ngx/nginx.pid")" 2>/dev/null || true

# --- 2. the edge -----------------------------------------------------------------------------
start_edge load MCP_MAX_SESSIONS=10000 MCP_MAX_SESSIONS_PER_PRINCIPAL=10000
url=https://localhost:$edge_port
export MCP_BENCH_KEY=$key WRK_KEY=$key WRK_ARGS=$args_json WRK_MCP_NAME=search_docs
echo
echo "## 2. mcp-edge (pid $edge_pid, port $edge_port), API key auth, TLS, HTTP/1.1 keep-alive"
# Reply types, for the record (and a check that each request works before loading it).
probe() { # label curl-args...: prints the status and Content-Type of one reply
  local label=$1
  shift
  curl -s --http1.1 -o "$work/probe.body" -D "$work/probe.head" --cacert "$edge_ca" "$@" || true
  printf '  %-28s %s, %s\n' "$label" \
    "$(head -1 "$work/probe.head" | tr -d '\r' | sed 's/ *$//')" \
    "$(grep -i '^content-type:' "$work/probe.head" | tr -d '\r' || echo 'no Content-Type')"
}
meta='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"mcp-edge-bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}'
hdrs=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json'
  -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28')
echo "reply types (curl --http1.1, one request each):"
probe "GET /health" "$url/health"
probe "stateless tools/list" "${hdrs[@]}" -H 'Mcp-Method: tools/list' \
  -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{$meta}}" "$url/mcp"
probe "stateless tools/call" "${hdrs[@]}" -H 'Mcp-Method: tools/call' -H 'Mcp-Name: search_docs' \
  -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search_docs\",\"arguments\":$args_json,$meta}}" \
  "$url/mcp"
# x-mcp-header properties of the tool's schema become Mcp-Param-* headers, as in mcp-edge bench.
export WRK_PARAM_HEADERS
WRK_PARAM_HEADERS=$(curl -s --cacert "$edge_ca" "${hdrs[@]}" -H 'Mcp-Method: tools/list' \
  -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{$meta}}" "$url/mcp" |
  python3 "$WRK_LUA_DIR/param_headers.py" search_docs "$args_json")
[ -z "$WRK_PARAM_HEADERS" ] || echo "  search_docs param headers: $(tr '\n' ' ' <<<"$WRK_PARAM_HEADERS")"

python3 "$WRK_LUA_DIR/open_sessions.py" --port "$edge_port" --ca "$edge_ca" \
  --count "$call_sessions" --out "$work/sessions.txt"
export WRK_SESSIONS_FILE=$work/sessions.txt
probe "session tools/call" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-06-18' \
  -H "Mcp-Session-Id: $(head -1 "$WRK_SESSIONS_FILE")" \
  -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search_docs\",\"arguments\":$args_json}}" \
  "$url/mcp"
echo
for c in "${concs[@]}"; do
  run_wrk "GET /health" "$c" get_ok.lua "$url/health"
done
for c in "${concs[@]}"; do
  WRK_MCP_METHOD=tools/list run_wrk "stateless tools/list" "$c" stateless.lua "$url/mcp"
done
for c in "${concs[@]}"; do
  WRK_MCP_METHOD=tools/call run_wrk "stateless tools/call" "$c" stateless.lua "$url/mcp"
done
for c in "${concs[@]}"; do
  run_wrk "session tools/call ($call_sessions sessions)" "$c" session.lua "$url/mcp"
done

# --- 3. client check --------------------------------------------------------------------
echo
echo "## 3. client check: stateless tools/call c=$check_c, wrk vs mcp-edge bench --http1 (back to back)"
WRK_MCP_METHOD=tools/call run_wrk "stateless tools/call (wrk, check)" "$check_c" stateless.lua "$url/mcp"
brc=0 bench_warmup=$warmup
[ "$warmup" != 0 ] || bench_warmup=0s
"$bin" bench --url "$url/mcp" --ca-file "$edge_ca" --mode stateless --http1 \
  --concurrency "$check_c" --duration "$duration" --warmup "$bench_warmup" \
  --args "$args_json" --json >"$work/bench.out" 2>"$work/bench.err" || brc=$?
grep -v '^{' "$work/bench.out" | sed 's/^/  mcp-edge bench: /' || true
[ "$brc" = 0 ] || { echo "bench-path: mcp-edge bench exited $brc:" >&2; cat "$work/bench.err" >&2; }
bench_json=$(grep '^{' "$work/bench.out" || echo '{}')
read -r b_rps b_p50 b_p99 b_failed b_reqs < <(python3 -c '
import json, sys
j = json.loads(sys.argv[1]) or {"rps": 0, "latency_ms": {"p50": 0, "p99": 0}, "failed": 1, "requests": 0}
l = j["latency_ms"]
print(j["rps"], int(l["p50"] * 1000), int(l["p99"] * 1000), j["failed"] + j.get("warmup_failed", 0), j["requests"])
' "$bench_json")
record "stateless tools/call (mcp-edge bench --http1)" "$check_c" "$b_rps" "$b_p50" "$b_p99" "$b_failed" "$b_reqs"
wk="stateless tools/call (wrk, check)|$check_c"
agree=$(awk -v wr="${RPS[$wk]}" -v br="$b_rps" -v wp="${P99[$wk]}" -v bp="$b_p99" 'BEGIN {
  r = br / wr; p = bp / wp
  printf "req/s bench/wrk = %.2f, p99 bench/wrk = %.2f: %s", r, p,
    (r >= 0.8 && r <= 1.25 && p >= 0.8 && p <= 1.25) ? "agree within 20 %" : "DO NOT agree within 20 %" }')
echo "client check: $agree"
stop_edge

# --- 3b. the cost of traces and the audit trail ------------------------------------------
# Stateless tools/call at c=$check_c on fresh edges: audit off; audit to stdout (the
# default; /dev/null here); traces (audit off, so each cost is its own) at sample_ratio
# 1.0 exported over OTLP/HTTP to a cheap sink (nginx answering 200, so the edge's
# exporter is what is measured), within the default trace budget
# (otel.max_traces_per_second = 1000) and with no budget (every call traced); the same
# with the collector down (a closed port). The variants alternate over BENCH_OBS_ROUNDS
# rounds (default 3) of BENCH_OBS_DURATION (default 5s) and each cost is the median of
# its per-round ratios: this shared machine drifts by more than the costs measured. Not
# in the table of section 4. BENCH_OTEL=0 skips this part.
if [ "${BENCH_OTEL:-1}" != 0 ]; then
  obs_rounds=${BENCH_OBS_ROUNDS:-3}
  echo
  echo "## 3b. cost of traces and the audit trail: stateless tools/call c=$check_c, $obs_rounds alternating rounds"
  sink=$work/otlp-sink
  mkdir -p "$sink"
  sink_port=$(free_port)
  sed -e "s|@DIR@|$sink|g" -e "s|@PORT@|$sink_port|g" "$WRK_LUA_DIR/otlp_sink.conf.in" >"$sink/nginx.conf"
  nginx -p "$sink" -c "$sink/nginx.conf" 2>"$sink/stderr.log" &
  pids+=($!)
  closed_port=$(free_port)
  obs_variants=(
    "audit off, traces off|MCP_AUDIT_OUTPUT=off"
    "audit on (stdout), traces off|MCP_AUDIT_OUTPUT=stdout"
    "traces on (ratio 1.0), audit off|MCP_AUDIT_OUTPUT=off MCP_OTEL_ENDPOINT=http://127.0.0.1:$sink_port MCP_OTEL_SAMPLE_RATIO=1.0"
    "traces on, no budget, audit off|MCP_AUDIT_OUTPUT=off MCP_OTEL_ENDPOINT=http://127.0.0.1:$sink_port MCP_OTEL_SAMPLE_RATIO=1.0 MCP_OTEL_MAX_TRACES_PER_SECOND=0"
    "traces on, collector down, audit off|MCP_AUDIT_OUTPUT=off MCP_OTEL_ENDPOINT=http://127.0.0.1:$closed_port MCP_OTEL_SAMPLE_RATIO=1.0"
  )
  table_rows=("${rows[@]}")
  main_duration=$duration
  duration=${BENCH_OBS_DURATION:-5s}
  for r in $(seq "$obs_rounds"); do
    n=0
    for v in "${obs_variants[@]}"; do
      label=${v%%|*}
      read -r -a vars <<<"${v#*|}"
      n=$((n + 1))
      start_edge "obs-$r-$n" "${vars[@]}"
      export MCP_BENCH_KEY=$key WRK_KEY=$key
      cpu_pid=$edge_pid WRK_MCP_METHOD=tools/call run_wrk "tools/call: $label #$r" "$check_c" stateless.lua "https://localhost:$edge_port/mcp"
      echo "  edge CPU per request: ${CPU["tools/call: $label #$r|$check_c"]} µs"
      # How much of the traffic was traced (warm-up included on both sides): traces
      # shed (one per request) past the budget, at the exporter queue or while the
      # collector fails.
      case "$label" in *"traces on"*)
        curl -s "http://127.0.0.1:$edge_metrics/metrics" | awk '
          /^mcp_edge_http_requests_total\{/ && /route="\/mcp"/ { n += $2 }
          /^mcp_edge_traces_shed_total\{/ { shed += $2 }
          /^mcp_edge_trace_spans_dropped_total / { dropped = $2 }
          /^mcp_edge_trace_export_failures_total / { failed = $2 }
          END {
            traced = n > 0 ? (1 - shed / n) * 100 : 0
            printf "  /mcp requests %d, traces shed %d: %.0f %% traced; spans dropped %d; failed exports %d\n", n, shed, traced, dropped, failed
          }' ;;
      esac
      stop_edge
    done
  done
  duration=$main_duration
  rows=("${table_rows[@]}")
  # Two measures of each cost, as medians of per-round ratios to "audit off, traces
  # off": throughput (req/s), and the edge's CPU time per request, which the load
  # generator and the machine's drift move less.
  median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  for v in "${obs_variants[@]:1}"; do
    label=${v%%|*}
    ratios=() cpus=()
    for r in $(seq "$obs_rounds"); do
      base="tools/call: audit off, traces off #$r|$check_c" this="tools/call: $label #$r|$check_c"
      ratios+=("$(awk -v a="${RPS[$this]}" -v b="${RPS[$base]}" 'BEGIN { printf "%.2f", a / b }')")
      cpus+=("$(awk -v a="${CPU[$this]}" -v b="${CPU[$base]}" 'BEGIN { printf "%.2f", a / b }')")
    done
    m=$(printf '%s\n' "${ratios[@]}" | median) mc=$(printf '%s\n' "${cpus[@]}" | median)
    awk -v l="$label" -v m="$m" -v mc="$mc" -v r="${ratios[*]}" -v rc="${cpus[*]}" 'BEGIN {
      printf "  %-42s throughput %.2f (cost %.0f %%; rounds %s), CPU per request %.2f (%+.0f %%; rounds %s)\n",
        l, m, (1 - m) * 100, r, mc, (mc - 1) * 100, rc }'
  done
  kill "$(cat "$sink/nginx.pid")" 2>/dev/null || true
fi

# --- 3c. the status page open and polling --------------------------------------------------
# BENCH_STATUS=1: stateless tools/call at c=$check_c on one edge, in BENCH_OBS_ROUNDS
# alternating rounds of BENCH_OBS_DURATION without and with the status page polled
# every second (as an open page does: status.json?view=page, plus status.json as a
# script would), on the admin listener. Prints the median ratio with/without of
# throughput and of the edge's CPU per request (which includes answering the polls).
# Not in the table of section 4. The request path should be unchanged within noise.
if [ "${BENCH_STATUS:-0}" != 0 ]; then
  status_rounds=${BENCH_OBS_ROUNDS:-3}
  median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  echo
  echo "## 3c. the status page open and polling every second: stateless tools/call c=$check_c, $status_rounds alternating rounds"
  table_rows=("${rows[@]}")
  main_duration=$duration
  duration=${BENCH_OBS_DURATION:-5s}
  start_edge status
  export MCP_BENCH_KEY=$key WRK_KEY=$key
  status_url=http://127.0.0.1:$edge_metrics
  curl -sf -o /dev/null "$status_url/status.json" || { echo "bench-path: no status page at $status_url" >&2; exit 1; }
  poller=
  for r in $(seq "$status_rounds"); do
    for variant in closed open; do
      if [ "$variant" = open ]; then
        (while :; do
          curl -s -o /dev/null "$status_url/status.json?view=page"
          curl -s -o /dev/null "$status_url/status.json"
          sleep 1
        done) &
        poller=$!
        pids+=("$poller")
      fi
      cpu_pid=$edge_pid WRK_MCP_METHOD=tools/call run_wrk "tools/call: status page $variant #$r" "$check_c" stateless.lua "https://localhost:$edge_port/mcp"
      if [ -n "$poller" ]; then
        kill "$poller" 2>/dev/null || true
        wait "$poller" 2>/dev/null || true
        poller=
      fi
    done
  done
  stop_edge
  duration=$main_duration
  rows=("${table_rows[@]}")
  ratios=() cpus=()
  for r in $(seq "$status_rounds"); do
    base="tools/call: status page closed #$r|$check_c" this="tools/call: status page open #$r|$check_c"
    ratios+=("$(awk -v a="${RPS[$this]}" -v b="${RPS[$base]}" 'BEGIN { printf "%.2f", a / b }')")
    cpus+=("$(awk -v a="${CPU[$this]}" -v b="${CPU[$base]}" 'BEGIN { printf "%.2f", a / b }')")
  done
  m=$(printf '%s\n' "${ratios[@]}" | median) mc=$(printf '%s\n' "${cpus[@]}" | median)
  echo "  status page open/closed: throughput $m (rounds ${ratios[*]}), edge CPU per request $mc (rounds ${cpus[*]})"
fi

# --- 4. table ---------------------------------------------------------------------------
goal_for() { # target c -> "min_ratio max_p99_us" or empty
  case "$1|$2" in
    "stateless tools/call|64" | "stateless tools/call (wrk, check)|64" \
      | "stateless tools/call (mcp-edge bench --http1)|64") echo "0.30 5000" ;;
    "session tools/call ($call_sessions sessions)|64") echo "0.22 5000" ;;
    "stateless tools/list|"*) echo "0.45 0" ;;
    "GET /health|"*) echo "0.90 0" ;;
  esac
}
echo
echo "## 4. results (ratio = req/s / nginx req/s at the same concurrency)"
echo
echo "| target | concurrency | req/s | p50 | p99 | failed | ratio-to-nginx | goal |"
echo "|---|---|---|---|---|---|---|---|"
for k in "${rows[@]}"; do
  t=${k%|*} c=${k##*|}
  n=${RPS["nginx static 200|$c"]:-}
  ratio=—
  [ -z "$n" ] || ratio=$(awk -v a="${RPS[$k]}" -v b="$n" 'BEGIN { printf "%.2f", a / b }')
  goal=—
  read -r gmin gp99 <<<"$(goal_for "$t" "$c")" || true
  if [ -n "${gmin:-}" ] && [ -n "$n" ]; then
    ok=$(awk -v r="$ratio" -v m="$gmin" -v p="${P99[$k]}" -v mp="$gp99" \
      'BEGIN { print (r >= m && (mp == 0 || p < mp)) ? "met" : "MISSED" }')
    goal="≥$gmin"
    [ "$gp99" = 0 ] || goal="$goal, p99<$((gp99 / 1000)) ms"
    goal="$goal: $ok"
  fi
  printf '| %s | %s | %.0f | %s | %s | %s of %s | %s | %s |\n' "$t" "$c" "${RPS[$k]}" \
    "$(ms "${P50[$k]}")" "$(ms "${P99[$k]}")" "${FAILED[$k]}" "${REQS[$k]}" "$ratio" "$goal"
done

# --- 5. memory --------------------------------------------------------------------------
echo
echo "## 5. memory: a fresh edge, $nsessions sessions (initialize 2025-06-18 + notifications/initialized, kept open)"
start_edge memory MCP_MAX_SESSIONS=$((nsessions + 100)) MCP_MAX_SESSIONS_PER_PRINCIPAL=$((nsessions + 100))
export MCP_BENCH_KEY=$key
python3 "$WRK_LUA_DIR/open_sessions.py" --port "$edge_port" --ca "$edge_ca" --warmup 5
sleep 1
idle=$(rss_kb "$edge_pid")
start_s=$(date +%s.%N)
python3 "$WRK_LUA_DIR/open_sessions.py" --port "$edge_port" --ca "$edge_ca" \
  --count "$nsessions" --connections 4 --out "$work/memory-sessions.txt"
open_s=$(awk -v a="$start_s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
after=$(rss_kb "$edge_pid")
awk -v i="$idle" -v a="$after" -v n="$nsessions" -v s="$open_s" 'BEGIN {
  per = (a - i) / n
  printf "idle RSS (after start + 10 warm-up requests): %.1f MB (goal < 20 MB: %s)\n", i / 1024, (i < 20 * 1024) ? "met" : "MISSED"
  printf "RSS with %d sessions: %.1f MB (opened in %s s, %.0f sessions/s)\n", n, a / 1024, s, n / s
  printf "per session: (%d - %d) kB / %d = %.2f KB (goal < 30 KB: %s)\n", a, i, n, per, (per < 30) ? "met" : "MISSED"
}'
stop_edge

echo
if [ "$total_failed" -gt 0 ]; then
  echo "bench-path: FAILED: $total_failed response(s) failed the checks (see above)" >&2
  exit 1
fi
echo "bench-path: every response checked, none failed"
