#!/usr/bin/env bash
# Benchmark of the edge as OAuth authorization server ([auth.oauth], issue 25):
#  1. sign-ins per second (DCR once, then whole sign-ins with an API key: authorize,
#     sign-in page, consent, token) by tests/bench/oauth_sign_ins.py;
#  2. the added cost of an edge-issued access token against an API key on a stateless
#     `tools/call search_docs`: `mcp-edge bench` with each credential, alternating over
#     BENCH_ROUNDS rounds, calls/s and the edge's CPU per call (/proc/<pid>/stat).
#  3. with valgrind installed, the same two calls' instructions (callgrind, one call at a
#     time, BENCH_CG_CALLS each): repeatable whatever else the machine does.
# Usage: tests/bench-oauth.sh [concurrency]   (default 16). Prints numbers; no
# pass/fail. Timings on a shared machine are noisy: compare ratios taken in one run,
# on a quiet machine (check `uptime`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MCP_EDGE_BIN:-target/release/mcp-edge}
[ -n "${MCP_EDGE_BIN:-}" ] || cargo build --release --quiet
conc=${1:-16}
rounds=${BENCH_ROUNDS:-3}
dur=${BENCH_DURATION:-8s}
work=$(mktemp -d)
trap 'kill "${pid:-0}" "${cgpid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18953}
key="bench-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'bench %s\n' "$key" > "$work/api_keys"
"$bin" gen-oauth-key > "$work/oauth_signing_key"
"$bin" gen-session-key > "$work/session_keys"
# A CA and a leaf for localhost (a self-signed leaf is refused as a CA used as end entity).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca_key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/tls_key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca_key" -CAcreateserial \
  -days 2 -extfile "$work/leaf.ext" -out "$work/tls_cert" 2>/dev/null
mkdir -p "$work/docs" && cp tests/bench/corpus.md.in "$work/docs/README.md"
(cd "$work" && exec env MCP_HOST=127.0.0.1 MCP_PORT="$port" MCP_TLS_CERT_FILE=tls_cert MCP_TLS_KEY_FILE=tls_key \
  MCP_API_KEYS_FILE=api_keys MCP_DOCS_DIR=docs MCP_OAUTH=true MCP_OAUTH_SIGNING_KEY_FILE=oauth_signing_key \
  MCP_SESSION_KEYS_FILE=session_keys MCP_OAUTH_ACCESS_TOKEN_TTL=24h MCP_OAUTH_REFRESH_TOKEN_TTL=24h MCP_RESOURCE_URI="https://localhost:$port/mcp" \
  MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_FAILED_AUTH_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s \
  MCP_PROTOCOL_BURST=1000000 MCP_OAUTH_REGISTRATION_RATE=1000000/s MCP_LOG_LEVEL=warn MCP_AUDIT_OUTPUT=off \
  "$OLDPWD/$bin" serve >/dev/null 2>"$work/server.log") &
pid=$!
for _ in $(seq 100); do
  curl -sf --cacert "$work/ca.pem" "https://localhost:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg); cores: $(nproc)"
resource="https://localhost:$port/mcp"
MCP_BENCH_KEY=$key python3 tests/bench/oauth_sign_ins.py --port "$port" --ca "$work/ca.pem" \
  --resource "$resource" --n "${BENCH_SIGN_INS:-400}" --threads 4 --token-out "$work/token"
token=$(cat "$work/token")
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
run() { # credential → "calls/s cpu-µs-per-call" (CPU over the whole run, warm-up included)
  local before after out calls total
  before=$(cpu)
  out=$(MCP_BENCH_KEY=$1 "$bin" bench --url "$resource" --ca-file "$work/ca.pem" --mode stateless \
    --concurrency "$conc" --duration "$dur" --args '{"query":"rate limits"}')
  after=$(cpu)
  calls=$(grep -o 'rps=[0-9.]*' <<<"$out" | cut -d= -f2)
  total=$(grep -o ' requests=[0-9]*' <<<"$out" | cut -d= -f2)
  grep -q ' failed=0' <<<"$out" || { echo "bench failed: $out" >&2; exit 1; }
  echo "$calls $(( (after - before) * 1000000 / hz / (total > 0 ? total : 1) ))"
}
echo "stateless tools/call at c=$conc, $rounds alternating rounds of $dur"
printf '%-6s %-12s %-14s %-12s %-14s %s\n' round "key calls/s" "key µs/call" "token calls/s" "token µs/call" "token/key"
for r in $(seq "$rounds"); do
  read -r kc ku < <(run "$key")
  read -r tc tu < <(run "$token")
  printf '%-6s %-12s %-14s %-12s %-14s %s\n' "$r" "$kc" "$ku" "$tc" "$tu" "$(awk -v a="$tc" -v b="$kc" 'BEGIN{printf "%.3f", a/b}')"
done

command -v valgrind >/dev/null || exit 0
# Instructions per call, by callgrind: a second edge (same files) under valgrind, counters
# zeroed before and dumped after each credential's calls.
cgport=$((port + 1))
calls=${BENCH_CG_CALLS:-300}
(cd "$work" && exec env MCP_HOST=127.0.0.1 MCP_PORT="$cgport" MCP_TLS_CERT_FILE=tls_cert MCP_TLS_KEY_FILE=tls_key \
  MCP_API_KEYS_FILE=api_keys MCP_DOCS_DIR=docs MCP_OAUTH=true MCP_OAUTH_SIGNING_KEY_FILE=oauth_signing_key \
  MCP_SESSION_KEYS_FILE=session_keys MCP_OAUTH_ACCESS_TOKEN_TTL=24h MCP_RESOURCE_URI="$resource" \
  MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s MCP_PROTOCOL_BURST=1000000 MCP_METRICS_MODE=off \
  MCP_LOG_LEVEL=warn MCP_AUDIT_OUTPUT=off \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$OLDPWD/$bin" serve >/dev/null 2>"$work/cg.log") &
cgpid=$!
for _ in $(seq 900); do
  curl -sf --cacert "$work/ca.pem" "https://localhost:$cgport/health" >/dev/null 2>&1 && break
  kill -0 "$cgpid" 2>/dev/null || { echo "the edge under valgrind exited:"; cat "$work/cg.log"; exit 1; }
  sleep 0.2
done
cgurl="https://localhost:$cgport/mcp"
calls_with() {
  MCP_BENCH_KEY=$1 "$bin" bench --url "$cgurl" --ca-file "$work/ca.pem" --mode stateless \
    --concurrency 1 --requests "$2" --warmup 0s --args '{"query":"rate limits"}' >/dev/null
}
calls_with "$key" 30; calls_with "$token" 30   # warm both paths
instructions() { # credential → instructions per call
  callgrind_control -z "$cgpid" >/dev/null
  calls_with "$1" "$calls"
  callgrind_control -d "$cgpid" >/dev/null
  local dump
  dump=$(ls -t "$work"/cg.*.* 2>/dev/null | head -1)
  awk -v n="$calls" '/^(summary|totals):/ {print int($2 / n); exit}' "$dump"
}
ki=$(instructions "$key")
ti=$(instructions "$token")
echo "callgrind, instructions per stateless tools/call ($calls calls, one at a time, client's own work excluded):"
echo "  API key: $ki   edge access token: $ti   token/key: $(awk -v a="$ti" -v b="$ki" 'BEGIN{printf "%.3f", a/b}')"
