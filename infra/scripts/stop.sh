#!/usr/bin/env bash
# Stops the local services started by infra/scripts/start.sh.
#   infra/scripts/stop.sh [kafka] [clickhouse] [anvil] [registry] [llama] [embed] [kafka-cluster] [ballista]
# With --wipe, also deletes their data (Kafka log dir, ClickHouse data).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wipe=0; targets=()
for a in "$@"; do if [[ "$a" == --wipe ]]; then wipe=1; else targets+=("$a"); fi; done
(( ${#targets[@]} )) || targets=(ballista embed llama registry anvil clickhouse kafka kafka-cluster)
for t in "${targets[@]}"; do
  if [[ "$t" == kafka-cluster ]]; then
    for n in 1 2 3; do stop_daemon "kafka-node-$n"; done
  elif [[ "$t" == ballista ]]; then
    for f in "$CHORUS_RUN"/ballista-executor-*.pid; do
      if [[ -e "$f" ]]; then stop_daemon "$(basename "$f" .pid)"; fi
    done
    stop_daemon ballista-scheduler
  else
    stop_daemon "$t"
  fi
  if (( wipe )); then
    case "$t" in
      kafka) rm -rf "$CHORUS_HOME/kafka-data" ;;
      clickhouse) rm -rf "$CHORUS_HOME/clickhouse/data" ;;
      kafka-cluster) rm -rf "$CHORUS_HOME/kafka-cluster" ;;
      ballista) rm -rf "$CHORUS_HOME/ballista" ;;
    esac
  fi
done
