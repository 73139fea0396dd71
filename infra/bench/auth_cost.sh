#!/usr/bin/env bash
# What authentication and authorisation cost: the Kafka benchmark (kcat baseline, the
# idempotent producer, the router) and the ingest load test, each against the local broker
# (SASL/SCRAM-SHA-512, StandardAuthorizer, the ACL matrix; producer and router as their
# own principals) and against a private broker with the same settings minus auth, in the
# same run. Prints both and the ratio; asserts nothing.
#   infra/bench/auth_cost.sh [--chorus target/bench-dev/chorus] [--bench target/bench-dev/chorus-bench] [--events 200000] [--seconds 15] [--requests 60000]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
cd "$CHORUS_REPO"

chorus=target/bench-dev/chorus bench=target/bench-dev/chorus-bench events=200000 seconds=15 requests=60000
while (( $# )); do
  case "$1" in
    --chorus) chorus="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bash infra/scripts/start.sh kafka

# The same broker settings without authentication or an authorizer, on free ports.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$CHORUS_REPO/target/bench-noauth"; rm -rf "$dir"; mkdir -p "$dir"
port=$(free_port) controller=$(free_port)
bash infra/scripts/kafka-auth.sh config "$dir/server.properties" "$port" "$controller" "$dir/logs" 8
sed -i -e 's/^listener.security.protocol.map=.*/listener.security.protocol.map=CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT/' \
  -e '/^sasl\./d' -e '/^listener\.name\./d' -e '/^authorizer\.class\.name/d' \
  -e '/^allow\.everyone/d' -e '/^super\.users/d' "$dir/server.properties"
cp=("$CHORUS_HOME/kafka-$KAFKA_VERSION/libs/*")
jvm=(java -Xms512m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" -cp "${cp[0]}")
"${jvm[@]}" kafka.tools.StorageTool format --standalone -t chorus-bench-noauth -c "$dir/server.properties" >/dev/null
"${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 &
noauth_pid=$!
trap 'kill $noauth_pid 2>/dev/null || true' EXIT
wait_until "the broker without auth on $port" 120 port_open "$port"

run_mode() {  # run_mode MODE: the benchmarks against one broker, raw output in $dir/MODE.*
  local mode="$1"
  if [[ "$mode" == auth ]]; then
    export CHORUS_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" CHORUS_KAFKA_SECRETS_DIR="$CHORUS_HOME/kafka-secrets"
  else
    export CHORUS_KAFKA_BROKERS="127.0.0.1:$port"; unset CHORUS_KAFKA_SECRETS_DIR
  fi
  "$bench" --log warn kafka --events "$events" | tee "$dir/$mode.kafka"
  bash infra/bench/ingest_load.sh --chorus "$chorus" --bench "$bench" --seconds "$seconds" --requests "$requests" | tee "$dir/$mode.ingest"
}
# A first round warms both brokers' JVMs (the private one starts cold); the second counts.
run_mode noauth; run_mode auth
echo "== second round (the one reported)"
run_mode noauth; run_mode auth

rate() {  # rate FILE PREFIX FIELD_FROM_END -> the number
  awk -v p="$2" -v k="$3" 'index($0, p) == 1 { print $(NF - k); exit }' "$1"
}
echo
echo "auth cost: $events events, ingest ${seconds}s, $(nproc) cores (the same run, second round)"
printf '%-48s %14s %14s %8s\n' "measurement" "no auth /s" "SASL+ACLs /s" "ratio"
for row in "kcat -P|kafka|2" "chorus EventProducer|kafka|2" "chorus router|kafka|2" "POST messages|ingest|4"; do
  IFS='|' read -r name file field <<<"$row"
  off=$(rate "$dir/noauth.$file" "$name" "$field"); on=$(rate "$dir/auth.$file" "$name" "$field")
  printf '%-48s %14s %14s %8s\n' "$name" "$off" "$on" "$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')"
done
