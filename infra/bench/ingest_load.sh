#!/usr/bin/env bash
# Load test of the ingest API from a second process (wrk), authentication on: every
# request carries an API key and an EIP-712 signature of its own (pre-signed by
# `chorus-bench ingest-requests`), and is produced to Kafka. Beside it, in the same run,
# wrk against GET /ping of the same server (a constant answer) as the ceiling.
# Prints requests/s, p99 and the memory (peak RSS) of each role; asserts nothing.
# Then the latency at a fixed load: `chorus-bench post-rate` posts further pre-signed
# requests open loop at --rate req/s for --rate-seconds (percentiles from each request's
# scheduled time).
#   infra/bench/ingest_load.sh [--chorus target/bench-dev/chorus] [--bench target/bench-dev/chorus-bench] [--seconds 15] [--connections 64] [--rate 1000] [--rate-seconds 10]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
cd "$CHORUS_REPO"

chorus=target/bench-dev/chorus bench=target/bench-dev/chorus-bench seconds=15 connections=64 threads=2 requests=150000
rate=1000 rate_seconds=10
while (( $# )); do
  case "$1" in
    --chorus) chorus="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --rate-seconds) rate_seconds="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || apt_install wrk
# The local broker (SASL + ACLs) unless CHORUS_KAFKA_BROKERS names another one
# (infra/bench/auth_cost.sh points it at a broker without authentication).
if [[ -z "${CHORUS_KAFKA_BROKERS:-}" ]]; then
  bash infra/scripts/start.sh kafka
  export CHORUS_KAFKA_SECRETS_DIR="${CHORUS_KAFKA_SECRETS_DIR:-$CHORUS_HOME/kafka-secrets}"
fi
work=$(mktemp -d /tmp/chorus-ingest-load.XXXXXX)
prefix="bench.ingest.$(date +%s)."
port=$(( 20000 + RANDOM % 20000 ))
key_secret="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

"$chorus" --log warn --topic-prefix "$prefix" topics apply >/dev/null
if [[ -n "${CHORUS_KAFKA_SECRETS_DIR:-}" ]]; then
  bash infra/scripts/kafka-auth.sh acls "${CHORUS_KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}" "$prefix" >/dev/null
fi
echo "signing $requests requests ..." >&2
"$bench" --log warn --topic-prefix "$prefix"  ingest-requests --count "$(( requests + rate * rate_seconds ))" --accounts 2000 --out "$work/requests.tsv"

CHORUS_API_KEYS="bench:$key_secret:chat:write" "$chorus" --log warn --topic-prefix "$prefix" ingest \
  --listen "127.0.0.1:$port" --metrics-addr "127.0.0.1:$(( port + 1 ))" \
  --key-rate-per-s 0 >"$work/ingest.log" 2>&1 &
ingest_pid=$!
trap 'kill $ingest_pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_until "ingest on $port" 30 curl -sf "http://127.0.0.1:$port/ping"

run_wrk() {  # run_wrk NAME ARGS... -> prints "name req/s p99_ms non2xx"
  local name="$1"; shift
  local out; out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$@")
  local rps; rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  local p99; p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  local bad; bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  printf '%s|%s|%s|%s|%s\n' "$name" "$rps" "$p99" "${bad:-0}" "$total"
}

signed=$(run_wrk "POST messages (API key + EIP-712, to Kafka)" -s infra/bench/ingest_load.lua \
  "http://127.0.0.1:$port" -- "$work/requests.tsv" "$key_secret" "$threads")
ceiling=$(run_wrk "GET /ping (same server, constant)" "http://127.0.0.1:$port/ping")
# wrk sent at most the first $requests lines; the fixed-rate load takes the rest.
fixed_rate=$(CHORUS_BENCH_API_KEY="$key_secret" "$bench" --log warn post-rate --url "http://127.0.0.1:$port" \
  --requests "$work/requests.tsv" --skip "$requests" --rate "$rate" --seconds "$rate_seconds")

ingest_rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$ingest_pid/status")
kafka_rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$(cat "$CHORUS_RUN/kafka.pid")/status" 2>/dev/null || echo "?")
grep -q -F "$key_secret" "$work/ingest.log" && echo "WARNING: the ingest log mentions the key" >&2

echo
echo "ingest load, $threads wrk threads, $connections connections, ${seconds}s each, $(nproc) cores"
printf '%-46s %10s %9s %9s %10s %8s\n' "route" "req/s" "p99" "non-2xx" "requests" "vs ping"
ceiling_rps=$(cut -d'|' -f2 <<<"$ceiling")
for row in "$signed" "$ceiling"; do
  IFS='|' read -r name rps p99 bad total <<<"$row"
  ratio=$(awk -v a="$rps" -v b="$ceiling_rps" 'BEGIN { printf "%.3f", a / b }')
  printf '%-46s %10s %9s %9s %10s %8s\n' "$name" "$rps" "$p99" "$bad" "$total" "$ratio"
done
echo "peak RSS: ingest ${ingest_rss} MiB, kafka ${kafka_rss} MiB"
echo
echo "$fixed_rate"
