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
# Other gateways: none are built here; compare with the figures in the issue/README.
# Usage: tests/bench-proxy.sh
#   MCP_EDGE_BIN=path   use this binary (default: cargo build --release)
#   BENCH_DURATION=5s   BENCH_ROUNDS=3   BENCH_BACKENDS="echo everything"
#   BENCH_MODES="session stateless"  BENCH_CONCS="1 16 64"  BENCH_SESSIONS=64
#   BENCH_KEEP=200      BENCH_CG_CALLS=300   BENCH_STRACE=1 (0 skips strace)
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
for tool in wrk python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is not installed" >&2; exit 1; }
done
duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-3}
read -r -a backends <<<"${BENCH_BACKENDS:-echo everything}"
read -r -a modes <<<"${BENCH_MODES:-session stateless}"
read -r -a concs <<<"${BENCH_CONCS:-1 16 64}"
nsessions=${BENCH_SESSIONS:-64}
keep=${BENCH_KEEP:-200}
cg_calls=${BENCH_CG_CALLS:-300}
everything_js=$repo/tests/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js
export WRK_LUA_DIR=$repo/tests/bench WRK_MCP_NAME=echo WRK_ARGS='{"message":"hi","text":"hi"}'
export WRK_MCP_METHOD=tools/call

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mkdir -p "$work/secrets"
# A CA and a leaf for localhost (rustls clients refuse a CA certificate as the server's).
(cd "$work/secrets" &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout ca.key -out ca.pem 2>/dev/null &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout key.pem -out leaf.csr 2>/dev/null &&
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile <(printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n') -out cert.pem 2>/dev/null)
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

# start_edge NAME BACKEND [wrapper...]: sets PORT[NAME], PID[NAME].
declare -A PORT PID
start_edge() {
  local name=$1 backend=$2 dir=$work/$1 port
  shift 2
  mkdir -p "$dir"
  printf '[[backends]]\nname = "%s"\ncommand = %s\n' "$backend" "$(command_of "$backend")" >"$dir/edge.toml"
  port=$(free_port)
  (cd "$dir" && exec env MCP_EDGE_CONFIG="$dir/edge.toml" MCP_PORT="$port" \
    MCP_TLS_MODE=files MCP_TLS_CERT_FILE="$work/secrets/cert.pem" MCP_TLS_KEY_FILE="$work/secrets/key.pem" \
    MCP_API_KEYS_FILE="$work/secrets/api_keys" MCP_METRICS_LISTEN=127.0.0.1:0 \
    MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 \
    MCP_MAX_SESSIONS=100000 MCP_MAX_SESSIONS_PER_PRINCIPAL=100000 MCP_MAX_CHILDREN=1000 \
    MCP_SESSION_IDLE_TIMEOUT=2h MCP_POOL_IDLE_TIMEOUT=2h TMPDIR="$dir" \
    "$@" "$bin" serve >"$dir/stdout.log" 2>"$dir/server.log") &
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

echo "bench-proxy: binary $bin"
echo "bench-proxy: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools/call echo through a stdio backend; wrk -t2 HTTPS/1.1, $duration per run, $rounds alternating rounds; $nsessions sessions in session mode"
for b in "${backends[@]}"; do
  start_edge "$b" "$b"
  [[ " ${modes[*]} " != *" session "* ]] || open_sessions "$b" "$nsessions" "$work/$b.sessions"
done
for r in $(seq "$rounds"); do
  for c in "${concs[@]}"; do
    for b in "${backends[@]}"; do
      for m in "${modes[@]}"; do
        run "$b" "$m" "$c" "$r"
      done
    done
  done
done
echo
echo "| backend | mode | c | calls/s (rounds) | p50 | p99 | edge CPU per call |"
echo "|---|---|---|---|---|---|---|"
for b in "${backends[@]}"; do
  for m in "${modes[@]}"; do
    for c in "${concs[@]}"; do
      all=$(for r in $(seq "$rounds"); do printf '%.0f ' "${RPS[$b|$m|$c|$r]}"; done)
      printf '| %s | %s | %d | %.0f (%s) | %.2f ms | %.2f ms | %s µs |\n' "$b" "$m" "$c" \
        "$(med RPS "$b" "$m" "$c")" "${all% }" \
        "$(awk -v u="$(med P50 "$b" "$m" "$c")" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="$(med P99 "$b" "$m" "$c")" 'BEGIN { print u / 1000 }')" "$(med CPU "$b" "$m" "$c")"
    done
  done
done
for b in "${backends[@]}"; do stop_edge "$b"; done

# --- memory per proxied session ------------------------------------------------------------
echo
start_edge mem echo
open_sessions mem 4 "$work/warm.sessions" --call
sleep 1
before=$(rss_kb "${PID[mem]}")
open_sessions mem "$keep" "$work/mem.sessions" --call
sleep 1
after=$(rss_kb "${PID[mem]}")
awk -v b="$before" -v a="$after" -v n="$keep" 'BEGIN {
  printf "edge memory per proxied session (echo, %d sessions, one call each; children not counted): %.1f KiB (RSS %.1f -> %.1f MB)\n", n, (a - b) / n, b / 1024, a / 1024 }'
stop_edge mem

# --- system calls per call ------------------------------------------------------------------
if [ "${BENCH_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
  echo
  start_edge sys echo
  open_sessions sys "$nsessions" "$work/sys.sessions"
  for m in "${modes[@]}"; do
    export WRK_THREADS=2 WRK_SESSIONS_FILE=$work/sys.sessions
    script=stateless.lua
    [ "$m" = stateless ] || script=session.lua
    url="https://localhost:${PORT[sys]}/mcp"
    wrk -t2 -c16 -d1s -s "$WRK_LUA_DIR/$script" "$url" >/dev/null 2>&1 || true
    strace -f -c -q -p "${PID[sys]}" -o "$work/strace-$m.txt" &
    spid=$!
    sleep 1
    wrk -t2 -c16 -d5s --timeout 10s -s "$WRK_LUA_DIR/$script" "$url" >"$work/wrk-sys-$m.log" 2>&1 || true
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    n=$(field requests "$(grep '^WRK_RESULT' "$work/wrk-sys-$m.log")")
    awk -v n="$n" -v m="$m" '
      $NF == "total" { total = $(NF - 1 - ($(NF - 2) ~ /^[0-9]+$/ ? 1 : 0)) }
      $NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { calls[$NF] = $4 }
      END {
        s = 0; for (k in calls) s += calls[k]
        printf "system calls per %s call (strace -f, c=16, %d calls): %.1f;", m, n, s / n
        for (k in calls) if (calls[k] / n >= 0.1) printf " %s %.2f", k, calls[k] / n
        printf "\n"
      }' "$work/strace-$m.txt"
  done
  stop_edge sys
fi

# --- instructions per call ------------------------------------------------------------------
if command -v valgrind >/dev/null; then
  echo
  start_edge cg echo valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p"
  cgpid=${PID[cg]}
  # valgrind and vgdb (behind callgrind_control) meet in the edge's TMPDIR.
  for m in "${modes[@]}"; do
    calls() {
      "$bin" bench --url "https://localhost:${PORT[cg]}/mcp" --ca-file "$ca" --mode "$m" --http1 \
        --concurrency 1 --requests "$1" --warmup 0s --tool echo --args '{"message":"hi","text":"hi"}' >/dev/null
    }
    calls 30
    TMPDIR=$work/cg callgrind_control -z "$cgpid" >/dev/null
    calls "$cg_calls"
    before=$(ls "$work"/cg.* | wc -l)
    TMPDIR=$work/cg callgrind_control -d "$cgpid" >/dev/null
    # The dump is written when the edge next runs under valgrind: wait for the file.
    for _ in $(seq 300); do
      [ "$(ls "$work"/cg.* | wc -l)" -gt "$before" ] && break
      sleep 0.1
    done
    sleep 0.5
    dump=$(ls -t "$work"/cg.* | head -1)
    awk -v n="$cg_calls" -v m="$m" '/^(summary|totals):/ { printf "callgrind, instructions per %s call (echo, one at a time, %d calls): %d\n", m, n, $2 / n; exit }' "$dump"
  done
  stop_edge cg
fi
