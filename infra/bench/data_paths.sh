#!/usr/bin/env bash
# Every data path of issue 20 against its raw baseline, one after the other, on the
# local services (SASL + ACLs, CloudEvents): the producer and the router beside kcat,
# the ingest API beside /ping (plus latency at a fixed 1,000 req/s), the ClickHouse sink
# beside the clickhouse crate's inserter, the indexer beside plain eth_getLogs, and the
# live path beside direct calls to the same provider. Each report goes to OUT/<path>.txt
# (and stdout); with --profile, each run is also sampled by perf and drawn as
# docs/perf/<path>-<label>.svg (infra/bench/flamegraph.sh).
#
#   infra/bench/data_paths.sh [--bin target/bench-dev] [--bench BIN] [--label after]
#                             [--out target/bench-results/after] [--profile] [PATH...]
# PATH: kafka ingest clickhouse indexer live (default: all). --bench is the
# chorus-bench binary for the ingest load's client (default: the one in --bin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
cd "$CHORUS_REPO"

bin=target/bench-dev label=after out="" profile=0 bench=""
paths=()
while (( $# )); do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --profile) profile=1; shift ;;
    kafka|ingest|clickhouse|indexer|live) paths+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
(( ${#paths[@]} )) || paths=(kafka ingest clickhouse indexer live)
out="${out:-target/bench-results/$label}"
bench="${bench:-$bin/chorus-bench}"
mkdir -p "$out"
secrets="$CHORUS_HOME/kafka-secrets"
bash infra/scripts/start.sh kafka clickhouse anvil >&2

run() {  # run NAME COMMAND... : the report in $out/NAME.txt, profiled with --profile
  local name="$1"; shift
  echo "== $name ($label): $*" >&2
  if (( profile )); then
    infra/bench/flamegraph.sh "$name-$label" -- "$@" | tee "$out/$name.txt"
  else
    "$@" | tee "$out/$name.txt"
  fi
}

for path in "${paths[@]}"; do
  case "$path" in
    kafka) run kafka "$bin/chorus-bench" --log warn --kafka-secrets-dir "$secrets" kafka --events 1000000 ;;
    ingest) run ingest infra/bench/ingest_load.sh --chorus "$bin/chorus" --bench "$bench" --seconds 15 --requests 150000 ;;
    clickhouse) run clickhouse "$bin/chorus-bench" --log warn --kafka-secrets-dir "$secrets" clickhouse --rows 1000000 ;;
    indexer) run indexer "$bin/chorus-bench" --log warn --kafka-secrets-dir "$secrets" indexer --dev-key ;;
    live) run live "$bin/chorus-bench" --log warn --kafka-secrets-dir "$secrets" live-overhead \
            --rates 10,100,500 --seconds 15 --out "$out/live-overhead" ;;
  esac
done
