#!/usr/bin/env bash
# Stops the local services started by infra/scripts/start.sh.
#   infra/scripts/stop.sh [kafka] [clickhouse] [anvil] [registry] [llama] [embed]
# With --wipe, also deletes their data (Kafka log dir, ClickHouse data).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wipe=0; targets=()
for a in "$@"; do if [[ "$a" == --wipe ]]; then wipe=1; else targets+=("$a"); fi; done
(( ${#targets[@]} )) || targets=(embed llama registry anvil clickhouse kafka)
for t in "${targets[@]}"; do
  stop_daemon "$t"
  if (( wipe )); then
    case "$t" in
      kafka) rm -rf "$CHORUS_HOME/kafka-data" ;;
      clickhouse) rm -rf "$CHORUS_HOME/clickhouse/data" ;;
    esac
  fi
done
