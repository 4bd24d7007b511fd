#!/usr/bin/env bash
# Benchmark of the edge as OAuth authorization server ([auth.oauth], issue 25):
#  1. sign-ins per second (DCR once, then whole sign-ins with an API key: authorize,
#     sign-in page, consent, token) by tests/bench/oauth_sign_ins.py;
#  2. the added cost of an edge-issued access token against an API key on a stateless
#     `tools/call search_docs`: `mcp-edge bench` with each credential, alternating over
#     BENCH_ROUNDS rounds, calls/s and the edge's CPU per call (/proc/<pid>/stat).
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
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18953}
key="bench-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'bench %s\n' "$key" > "$work/api_keys"
"$bin" gen-oauth-key > "$work/oauth_signing_key"
"$bin" gen-session-key > "$work/session_keys"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$work/tls_key" -out "$work/tls_cert" 2>/dev/null
mkdir -p "$work/docs" && cp README.md "$work/docs/"
(cd "$work" && exec env MCP_HOST=127.0.0.1 MCP_PORT="$port" MCP_TLS_CERT_FILE=tls_cert MCP_TLS_KEY_FILE=tls_key \
  MCP_API_KEYS_FILE=api_keys MCP_DOCS_DIR=docs MCP_OAUTH=true MCP_OAUTH_SIGNING_KEY_FILE=oauth_signing_key \
  MCP_SESSION_KEYS_FILE=session_keys MCP_OAUTH_ACCESS_TOKEN_TTL=24h MCP_OAUTH_REFRESH_TOKEN_TTL=24h \
  MCP_RATE_LIMIT=1000000/s MCP_RATE_BURST=1000000 MCP_FAILED_AUTH_BURST=1000000 MCP_PROTOCOL_RATE=1000000/s \
  MCP_PROTOCOL_BURST=1000000 MCP_OAUTH_REGISTRATION_RATE=1000000/s MCP_LOG_LEVEL=warn MCP_AUDIT_OUTPUT=off \
  "$OLDPWD/$bin" serve >/dev/null 2>"$work/server.log") &
pid=$!
for _ in $(seq 100); do
  curl -sf --cacert "$work/tls_cert" "https://localhost:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg); cores: $(nproc)"
resource="https://localhost:$port/mcp"
MCP_BENCH_KEY=$key python3 tests/bench/oauth_sign_ins.py --port "$port" --ca "$work/tls_cert" \
  --resource "$resource" --n "${BENCH_SIGN_INS:-400}" --threads 4 --token-out "$work/token"
token=$(cat "$work/token")
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
run() { # credential → "calls/s cpu-µs-per-call" (CPU over the whole run, warm-up included)
  local before after out calls total
  before=$(cpu)
  out=$(MCP_BENCH_KEY=$1 "$bin" bench --url "$resource" --ca-file "$work/tls_cert" --mode stateless \
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
