#!/usr/bin/env bash
# Kafka authentication and authorisation for the local broker and the tests' brokers:
# one SCRAM-SHA-512 user per role (infra/kafka/principals), ACLs from infra/kafka/acls.
#   kafka-auth.sh secrets                      make the users' passwords (once; mode 600)
#   kafka-auth.sh config OUT PORT CONTROLLER_PORT LOG_DIR INTERNAL_PARTITIONS [NODE_ID VOTERS]
#                                               render infra/kafka/server.properties.template:
#                                               a single node, or with NODE_ID and VOTERS
#                                               (1@127.0.0.1:PORT,2@...,3@...) one node of a
#                                               cluster (replication 3, min in sync 2)
#   kafka-auth.sh format CONFIG CLUSTER_ID      format KRaft storage with every user
#                                               (--standalone unless CONFIG has static voters)
#   kafka-auth.sh acls BOOTSTRAP PREFIX         grant the ACL matrix under a topic prefix
# Passwords live in $CHORUS_HOME/kafka-secrets/<user>.password; clients find them with
# CHORUS_KAFKA_SECRETS_DIR (or one --kafka-password-file each). Never printed.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECRETS="$CHORUS_HOME/kafka-secrets"
KAFKA_LIBS="$CHORUS_HOME/kafka-$KAFKA_VERSION/libs"
ACL_TOOL_DIR="$CHORUS_HOME/kafka-$KAFKA_VERSION/chorus-acls"

principals() { sed -e 's/#.*//' "$CHORUS_REPO/infra/kafka/principals" | awk 'NF { print $1 }'; }
password() { cat "$SECRETS/$1.password"; }

# write_secret FILE: standard input to FILE (mode 600), replaced in one rename, so that a
# test granting ACLs in parallel never reads a half-written file.
write_secret() {
  local tmp; tmp=$(umask 077; mktemp "$1.XXXXXX")
  cat >"$tmp" && mv -f "$tmp" "$1"
}

make_secrets() {
  mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
  local user
  for user in $(principals); do
    [[ -s "$SECRETS/$user.password" ]] && continue
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | write_secret "$SECRETS/$user.password"
  done
  # Client settings for Kafka's own tools and the ACL tool, as the admin.
  write_secret "$SECRETS/admin.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password admin)";
PROPS
  # The read-only principal for kcat (-F): analysts and outside teams. PLAIN: Debian's kcat
  # (librdkafka 2.0.2) fails this broker's SCRAM-SHA-512 exchange.
  write_secret "$SECRETS/reader.kcat" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanisms=PLAIN
sasl.username=reader
sasl.password=$(password reader)
PROPS
}

render_config() {
  local out="$1" port="$2" controller="$3" logs="$4" partitions="$5" node="${6:-1}" voters="${7:-}"
  local user plain="" quorum replication=1 min_isr=1
  if [[ -n "$voters" ]]; then
    quorum="controller.quorum.voters=$voters"
    replication=$(awk -F, '{ print NF }' <<<"$voters")
    min_isr=$(( replication > 2 ? 2 : 1 ))
  else
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$controller"
  fi
  make_secrets
  # PLAIN only for what kcat uses: the read-only principal and the admin.
  for user in reader admin; do plain+="user_$user=\"$(password "$user")\" "; done
  (umask 077; sed -e "s#@PLAIN_USERS@#${plain% }#g" -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller#g" \
    -e "s#@LOG_DIR@#$logs#g" -e "s#@INTERNAL_PARTITIONS@#$partitions#g" \
    -e "s#@NODE_ID@#$node#g" -e "s#@QUORUM@#$quorum#g" \
    -e "s#@REPLICATION@#$replication#g" -e "s#@MIN_ISR@#$min_isr#g" \
    -e "s#@ADMIN_PASSWORD@#$(password admin)#g" -e "s#@CONTROLLER_PASSWORD@#$(password controller)#g" \
    "$CHORUS_REPO/infra/kafka/server.properties.template" >"$out")
}

format_storage() {
  local config="$1" cluster="$2" user scram=() quorum=(--standalone)
  # A cluster node names its voters in the config (a static quorum): no --standalone.
  grep -q '^controller.quorum.voters=' "$config" && quorum=()
  make_secrets
  for user in $(principals); do
    [[ "$user" == controller ]] && continue   # PLAIN on the controller listener, not SCRAM
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]")
  done
  java -Xms128m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" -cp "$KAFKA_LIBS/*" \
    kafka.tools.StorageTool format "${quorum[@]}" -t "$cluster" -c "$config" "${scram[@]}"
}

acl_tool() {
  local source="$CHORUS_REPO/infra/kafka/ChorusAcls.java"
  if [[ ! -f "$ACL_TOOL_DIR/ChorusAcls.class" || "$source" -nt "$ACL_TOOL_DIR/ChorusAcls.class" ]]; then
    mkdir -p "$ACL_TOOL_DIR"
    javac -nowarn -d "$ACL_TOOL_DIR" -cp "$KAFKA_LIBS/*" "$source"
  fi
}

grant() {
  local bootstrap="$1" prefix="$2"
  make_secrets; acl_tool
  java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$CHORUS_REPO/infra/kafka/log4j2.xml" \
    -cp "$KAFKA_LIBS/*:$ACL_TOOL_DIR" ChorusAcls "$bootstrap" "$SECRETS/admin.properties" \
    "$CHORUS_REPO/infra/kafka/acls" "$prefix"
}

case "${1:-}" in
  secrets) make_secrets ;;
  config) shift; render_config "$@" ;;
  format) shift; format_storage "$@" ;;
  acls) shift; grant "$@" ;;
  tool) acl_tool ;;
  *) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
