#!/usr/bin/env bash
# The proxy path (issue 26): what fronting a stdio MCP server costs the edge per call.
# In one run, on loopback, an edge (release build, its defaults: API key, rate limit
# checked (raised so it never refuses), audit and access log on, written to files) in
# front of each stdio backend:
#   echo        tests/bench/echo_server.py (the cheapest server: the edge's cost dominates)
#   everything  @modelcontextprotocol/server-everything's `echo` (tests/node; needs node)
# For each backend, mode (session: BENCH_SESSIONS sessions opened first, a child each;
# stateless: 2026-07-28, the principal's own child) and concurrency (1, 16, 64), wrk -t2
# over HTTPS/1.1 keep-alive, every reply checked, rounds alternating; prints calls/s,
# p50/p99 and the edge process's CPU per call (utime + stime of /proc/<pid>/stat:
# children excluded), as medians over the rounds. Then, on the echo backend:
#   - the edge's memory per proxied session (RSS before/after BENCH_KEEP sessions that
#     each made one call; children are separate processes, not counted);
#   - system calls per call (strace -f -c on the edge during a c=16 run), with valgrind;
#   - callgrind instructions per call (one call at a time, `mcp-edge bench`, counters
#     zeroed before and dumped after BENCH_CG_CALLS calls).
# Other gateways: none are built here; compare with the figures in the issue and docs/src/benchmarks/proxy.md.
# Before/after in one run: MCP_EDGE_BIN_BASE=path runs a second binary (`base`) beside
# the first in every round, section and measure, and prints the ratios edge/base
# (on a shared machine only ratios from one run mean anything).
# Usage: tests/bench-proxy.sh
#   MCP_EDGE_BIN=path   use this binary (default: cargo build --release)
#   MCP_EDGE_BIN_BASE=path  also run this one, alternating (optional)
#   BENCH_DURATION=5s   BENCH_ROUNDS=3   BENCH_BACKENDS="echo everything"
#   BENCH_MODES="session stateless"  BENCH_CONCS="1 16 64"  BENCH_SESSIONS=64
#   BENCH_KEEP=200      BENCH_CG_CALLS=300   BENCH_STRACE=1 (0 skips strace)
#   BENCH_SECTIONS="throughput memory syscalls callgrind" (any of them, in that order)
#   The callgrind section drives both binaries with MCP_EDGE_BIN's own `bench` client, so
#   an older binary is counted with the current client as MCP_EDGE_BIN_BASE.
# Not part of the test suite: record figures only from a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ -n "${MCP_EDGE_BIN:-}" ]; then
  bin=$(realpath "$MCP_EDGE_BIN")
else
  cargo build --release --quiet --bin mcp-edge
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/mcp-edge
fi
declare -A BIN=([edge]=$bin)
systems=(edge)
if [ -n "${MCP_EDGE_BIN_BASE:-}" ]; then
  BIN[base]=$(realpath "$MCP_EDGE_BIN_BASE")
  systems=(edge base)
fi
for tool in wrk python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is not installed" >&2; exit 1; }
done
duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-3}
read -r -a backends <<<"${BENCH_BACKENDS:-echo everything}"
read -r -a modes <<<"${BENCH_MODES:-session stateless}"
read -r -a concs <<<"${BENCH_CONCS:-1 16 64}"
sections=" ${BENCH_SECTIONS:-throughput memory syscalls callgrind} "
section() { [[ "$sections" == *" $1 "* ]]; }
nsessions=${BENCH_SESSIONS:-64}
keep=${BENCH_KEEP:-200}
cg_calls=${BENCH_CG_CALLS:-300}
everything_js=$repo/tests/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js
export WRK_LUA_DIR=$repo/tests/bench WRK_MCP_NAME=echo WRK_ARGS='{"message":"hi","text":"hi"}'
export WRK_MCP_METHOD=tools/call

work=$(mktemp -d)
pids=()
# shellcheck source=tests/bench/lib.sh
source "$repo/tests/bench/lib.sh"

mkdir -p "$work/secrets"
make_tls "$work/secrets"
ca=$work/secrets/ca.pem
key=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
echo "bench $key" >"$work/secrets/api_keys"
export MCP_BENCH_KEY=$key WRK_KEY=$key

command_of() { # backend → the TOML command array
  case "$1" in
    echo) echo "[\"python3\", \"$repo/tests/bench/echo_server.py\"]" ;;
    everything)
      [ -f "$everything_js" ] || { echo "bench-proxy: no $everything_js (npm ci in tests/node)" >&2; exit 1; }
      echo "[\"node\", \"$everything_js\", \"stdio\"]" ;;
  esac
}

# start_edge NAME BACKEND SYSTEM [wrapper...]: sets PORT[NAME], PID[NAME].
declare -A PORT PID
start_edge() {
  local name=$1 backend=$2 sysbin=${BIN[$3]} dir=$work/$1 port
  shift 3
  mkdir -p "$dir"
  printf '[[backends]]\nname = "%s"\ncommand = %s\n' "$backend" "$(command_of "$backend")" >"$dir/edge.toml"
  port=$(free_port)
  (cd "$dir" && exec env MCP_EDGE_CONFIG="$dir/edge.toml" MCP_PORT="$port" \
    MCP_TLS_MODE=files MCP_TLS_CERT_FILE="$work/secrets/cert.pem" MCP_TLS_KEY_FILE="$work/secrets/key.pem" \
    MCP_API_KEYS_FILE="$work/secrets/api_keys" MCP_METRICS_LISTEN=127.0.0.1:0 \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 \
    MCP_MAX_SESSIONS=100000 MCP_MAX_SESSIONS_PER_PRINCIPAL=100000 MCP_MAX_CHILDREN=1000 \
    MCP_SESSION_IDLE_TIMEOUT=2h MCP_POOL_IDLE_TIMEOUT=2h TMPDIR="$dir" \
    "$@" "$sysbin" serve >"$dir/stdout.log" 2>"$dir/server.log") &
  PID[$name]=$!
  pids+=("$!")
  PORT[$name]=$port
  for _ in $(seq 900); do
    curl -s -o /dev/null --cacert "$ca" "https://localhost:$port/health" && return
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.2
  done
  cat "$dir/server.log" >&2
  exit 1
}
stop_edge() {
  kill "${PID[$1]}" 2>/dev/null || true
  wait "${PID[$1]}" 2>/dev/null || true
}
open_sessions() { # NAME COUNT OUT [--call]
  python3 "$WRK_LUA_DIR/open_sessions.py" --port "${PORT[$1]}" --ca "$ca" --count "$2" \
    --out "$3" "${@:4}" 2>"$work/open.log" || { cat "$work/open.log" >&2; exit 1; }
}

declare -A RPS P50 P99 CPU REQS
# run NAME MODE C ROUND
run() {
  local name=$1 mode=$2 c=$3 r=$4 t=2 out line t0 script=stateless.lua
  [ "$c" -ge "$t" ] || t=$c
  export WRK_THREADS=$t WRK_SESSIONS_FILE=$work/$name.sessions
  [ "$mode" = stateless ] || script=session.lua
  local url="https://localhost:${PORT[$name]}/mcp"
  wrk -t"$t" -c"$c" -d1s --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >/dev/null 2>&1 || true
  out=$work/wrk-$name-$mode-$c-$r.log
  t0=$(cpu_ticks "${PID[$name]}")
  wrk -t"$t" -c"$c" -d"$duration" --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >"$out" 2>&1 || {
    cat "$out" >&2
    exit 1
  }
  line=$(grep '^WRK_RESULT' "$out") || { cat "$out" >&2; exit 1; }
  [ "$(field failed "$line")" = 0 ] || { echo "bench-proxy: failed calls ($name $mode c=$c)" >&2; cat "$out" >&2; exit 1; }
  local k="$name|$mode|$c|$r"
  RPS[$k]=$(field rps "$line") P50[$k]=$(field p50_us "$line") P99[$k]=$(field p99_us "$line")
  REQS[$k]=$(field requests "$line")
  CPU[$k]=$(awk -v t="$(($(cpu_ticks "${PID[$name]}") - t0))" -v hz="$(getconf CLK_TCK)" \
    -v n="${REQS[$k]}" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')
}
med() { # FIELD-ARRAY-NAME name mode c
  local -n a=$1
  for r in $(seq "$rounds"); do echo "${a[$2|$3|$4|$r]}"; done | median
}

for sys in "${systems[@]}"; do echo "bench-proxy: $sys binary ${BIN[$sys]}"; done
echo "bench-proxy: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools/call echo through a stdio backend; wrk -t2 HTTPS/1.1, $duration per run, $rounds alternating rounds; $nsessions sessions in session mode"
if section throughput; then
  for sys in "${systems[@]}"; do
    for b in "${backends[@]}"; do
      start_edge "$sys-$b" "$b" "$sys"
      [[ " ${modes[*]} " != *" session "* ]] || open_sessions "$sys-$b" "$nsessions" "$work/$sys-$b.sessions"
    done
  done
  for r in $(seq "$rounds"); do
    for c in "${concs[@]}"; do
      for b in "${backends[@]}"; do
        for m in "${modes[@]}"; do
          for sys in "${systems[@]}"; do
            run "$sys-$b" "$m" "$c" "$r"
          done
        done
      done
    done
  done
  echo
  echo "| binary | backend | mode | c | calls/s (rounds) | p50 | p99 | edge CPU per call |"
  echo "|---|---|---|---|---|---|---|---|"
  for b in "${backends[@]}"; do
    for m in "${modes[@]}"; do
      for c in "${concs[@]}"; do
        for sys in "${systems[@]}"; do
          n=$sys-$b
          all=$(for r in $(seq "$rounds"); do printf '%.0f ' "${RPS[$n|$m|$c|$r]}"; done)
          printf '| %s | %s | %s | %d | %.0f (%s) | %.2f ms | %.2f ms | %s µs |\n' "$sys" "$b" "$m" "$c" \
            "$(med RPS "$n" "$m" "$c")" "${all% }" \
            "$(awk -v u="$(med P50 "$n" "$m" "$c")" 'BEGIN { print u / 1000 }')" \
            "$(awk -v u="$(med P99 "$n" "$m" "$c")" 'BEGIN { print u / 1000 }')" "$(med CPU "$n" "$m" "$c")"
        done
      done
    done
  done
  if [ "${#systems[@]}" = 2 ]; then
    echo
    echo "| backend | mode | c | calls/s edge/base (per round) | CPU per call edge/base (per round) |"
    echo "|---|---|---|---|---|"
    for b in "${backends[@]}"; do
      for m in "${modes[@]}"; do
        for c in "${concs[@]}"; do
          rr=() cr=()
          for r in $(seq "$rounds"); do
            rr+=("$(awk -v a="${RPS[edge-$b|$m|$c|$r]}" -v z="${RPS[base-$b|$m|$c|$r]}" 'BEGIN { printf "%.2f", a / z }')")
            cr+=("$(awk -v a="${CPU[edge-$b|$m|$c|$r]}" -v z="${CPU[base-$b|$m|$c|$r]}" 'BEGIN { printf "%.2f", a / z }')")
          done
          printf '| %s | %s | %d | %.2f (%s) | %.2f (%s) |\n' "$b" "$m" "$c" \
            "$(printf '%s\n' "${rr[@]}" | median)" "${rr[*]}" "$(printf '%s\n' "${cr[@]}" | median)" "${cr[*]}"
        done
      done
    done
  fi
  for sys in "${systems[@]}"; do for b in "${backends[@]}"; do stop_edge "$sys-$b"; done; done
fi

# --- memory per proxied session ------------------------------------------------------------
if section memory; then
  echo
  for sys in "${systems[@]}"; do
    start_edge "mem-$sys" echo "$sys"
    open_sessions "mem-$sys" 4 "$work/warm.sessions" --call
    sleep 1
    before=$(rss_kb "${PID[mem-$sys]}")
    open_sessions "mem-$sys" "$keep" "$work/mem.sessions" --call
    sleep 1
    after=$(rss_kb "${PID[mem-$sys]}")
    awk -v s="$sys" -v b="$before" -v a="$after" -v n="$keep" 'BEGIN {
      printf "%s: memory per proxied session (echo, %d sessions, one call each; children not counted): %.1f KiB (RSS %.1f -> %.1f MB)\n", s, n, (a - b) / n, b / 1024, a / 1024 }'
    stop_edge "mem-$sys"
  done
fi

# --- system calls per call ------------------------------------------------------------------
if section syscalls && [ "${BENCH_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
  echo
  for sys in "${systems[@]}"; do
    start_edge "sys-$sys" echo "$sys"
    open_sessions "sys-$sys" "$nsessions" "$work/sys-$sys.sessions"
    for m in "${modes[@]}"; do
      export WRK_THREADS=2 WRK_SESSIONS_FILE=$work/sys-$sys.sessions
      script=stateless.lua
      [ "$m" = stateless ] || script=session.lua
      url="https://localhost:${PORT[sys-$sys]}/mcp"
      wrk -t2 -c16 -d1s -s "$WRK_LUA_DIR/$script" "$url" >/dev/null 2>&1 || true
      strace -f -c -q -p "${PID[sys-$sys]}" -o "$work/strace-$sys-$m.txt" &
      spid=$!
      sleep 1
      wrk -t2 -c16 -d5s --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >"$work/wrk-sys-$sys-$m.log" 2>&1 || true
      kill -INT "$spid" 2>/dev/null || true
      wait "$spid" 2>/dev/null || true
      n=$(field requests "$(grep '^WRK_RESULT' "$work/wrk-sys-$sys-$m.log")")
      awk -v n="$n" -v m="$m" -v sys="$sys" '
        $NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { calls[$NF] = $4 }
        END {
          s = 0; for (k in calls) s += calls[k]
          printf "%s: system calls per %s call (strace -f, c=16, %d calls): %.1f;", sys, m, n, s / n
          for (k in calls) if (calls[k] / n >= 0.1) printf " %s %.2f", k, calls[k] / n
          printf "\n"
        }' "$work/strace-$sys-$m.txt"
    done
    stop_edge "sys-$sys"
  done
fi

# --- instructions per call ------------------------------------------------------------------
if section callgrind && command -v valgrind >/dev/null; then
  echo
  for sys in "${systems[@]}"; do
    cg=cg-$sys
    mkdir -p "$work/$cg-out"
    start_edge "$cg" echo "$sys" valgrind --tool=callgrind --callgrind-out-file="$work/$cg-out/cg.%p"
    cgpid=${PID[$cg]}
    for m in "${modes[@]}"; do
      calls() {
        "$bin" bench --url "https://localhost:${PORT[$cg]}/mcp" --ca-file "$ca" --mode "$m" --http1 \
          --concurrency 1 --requests "$1" --warmup 0s --tool echo --args '{"message":"hi","text":"hi"}' >/dev/null
      }
      calls 30
      # valgrind and vgdb (behind callgrind_control) meet in the edge's TMPDIR.
      TMPDIR=$work/$cg callgrind_control -z "$cgpid" >/dev/null
      calls "$cg_calls"
      before=$(ls "$work/$cg-out" | wc -l)
      TMPDIR=$work/$cg callgrind_control -d "$cgpid" >/dev/null
      # The dump is written when the edge next runs under valgrind: wait for the file.
      for _ in $(seq 300); do
        [ "$(ls "$work/$cg-out" | wc -l)" -gt "$before" ] && break
        sleep 0.1
      done
      sleep 0.5
      dump=$(ls -t "$work/$cg-out"/cg.* | head -1)
      awk -v n="$cg_calls" -v m="$m" -v sys="$sys" '/^(summary|totals):/ { printf "%s: callgrind, instructions per %s call (echo, one at a time, %d calls): %d\n", sys, m, n, $2 / n; exit }' "$dump"
    done
    stop_edge "$cg"
  done
fi
