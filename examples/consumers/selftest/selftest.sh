#!/usr/bin/env bash
# End-to-end check of the example consumers against the local broker (and the registry):
#   selftest.sh [--registry URL] [--schemas DIR] [python] [typescript] [go]
# Makes two throwaway topic prefixes (selftest<pid>a. and ...b.), grants them the ACL matrix,
# writes CloudEvents records in Kafka transactions (some aborted, partitions ending on an
# aborted transaction, one transaction held open while the consumers read), runs each
# consumer with --until-end and compares its final line with what was written. Removes the
# topics, ACLs (and registry subjects) it made, whatever happens.
# Schemas: with --registry, the files of --schemas (default selftest/schemas, named <type>.json)
# are registered under <prefix><topic>-<type> and the consumers fetch them from the registry;
# without it the consumers read them with --schema-file-dir.
# Needs: install.sh done; Java and infra/scripts/kafka-auth.sh (ACLs); the admin secrets.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSUMERS="$(dirname "$HERE")"
REPO="$(cd "$CONSUMERS/../.." && pwd)"
CHORUS_HOME="${CHORUS_HOME:-$HOME/.chorus}"
PY="$CHORUS_HOME/venv/bin/python"
BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
READER_PW="$CHORUS_HOME/kafka-secrets/reader.password"
registry="" schemas="$HERE/schemas" langs=()
while (( $# )); do
  case "$1" in
    --registry) registry="${2%/}"; shift 2 ;;
    --schemas) schemas="$2"; shift 2 ;;
    python|typescript|go) langs+=("$1"); shift ;;
    *) sed -n '2,13p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
done
(( ${#langs[@]} )) || langs=(python typescript go)
GOOD="selftest$$a." BAD="selftest$$b."
TOPICS=chorus.chat.messages,chorus.poi.scores,chorus.feedback
work="$(mktemp -d)"
hold_pid=""
passed=0 failed=0

cleanup() {
  [[ -n "$hold_pid" ]] && kill "$hold_pid" 2>/dev/null && wait "$hold_pid" 2>/dev/null
  for p in "$GOOD" "$BAD"; do
    "$PY" "$HERE/kafka_fixture.py" delete --bootstrap "$BOOTSTRAP" --prefix "$p" 2>/dev/null || true
    if [[ -n "$registry" ]]; then
      for s in $(curl -sf "$registry/apis/ccompat/v7/subjects" | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)))' | grep -F "$p" || true); do
        curl -sf -X DELETE "$registry/apis/ccompat/v7/subjects/$s" >/dev/null || true
        curl -sf -X DELETE "$registry/apis/ccompat/v7/subjects/$s?permanent=true" >/dev/null || true
      done
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '[selftest] %s\n' "$*" >&2; }

register() { # register PREFIX: every schema file under every topic of the fixture
  local prefix="$1" f type topic
  for f in "$schemas"/*.json; do
    type="$(basename "$f" .json)"
    case "$type" in
      *.chat.message.*) topic=chorus.chat.messages ;;
      *.poi.score.*) topic=chorus.poi.scores ;;
      *) continue ;;
    esac
    "$PY" -c 'import json,sys; print(json.dumps({"schemaType": "JSON", "schema": open(sys.argv[1]).read()}))' "$f" |
      curl -sf -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' --data-binary @- \
        "$registry/apis/ccompat/v7/subjects/$prefix$topic-$type/versions" >/dev/null ||
      { say "could not register $prefix$topic-$type at $registry"; exit 1; }
  done
}

# check NAME PREFIX EXPECTED_JSON WANT_RC LANG
check() {
  local name="$1" prefix="$2" expected="$3" want_rc="$4" lang="$5" rc=0 src=(--schema-file-dir "$schemas")
  [[ -n "$registry" ]] && src=(--registry "$registry")
  timeout 180 bash "$CONSUMERS/run.sh" "$lang" --bootstrap "$BOOTSTRAP" --password-file "$READER_PW" \
    --topic-prefix "$prefix" --topics "$TOPICS" "${src[@]}" --until-end --quiet --timeout-seconds 60 \
    >"$work/out" 2>"$work/err" || rc=$?
  if "$PY" - "$expected" "$work/out" "$lang" "$rc" "$want_rc" <<'PY'
import json, sys
exp = json.loads(sys.argv[1]); lines = open(sys.argv[2]).read().splitlines()
lang, rc, want = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
problems = []
if rc != want: problems.append(f"exit code {rc}, want {want}")
if len(lines) != 1: problems.append(f"{len(lines)} lines on stdout, want 1")
else:
    got = json.loads(lines[0])
    if list(got) != ["consumer", "records", "parsed", "valid", "duplicates", "by_topic"]:
        problems.append(f"keys {list(got)}")
    if got.get("consumer") != lang: problems.append(f"consumer {got.get('consumer')!r}")
    for k in ("records", "parsed", "valid", "duplicates"):
        if got.get(k) != exp[k]: problems.append(f"{k} {got.get(k)}, want {exp[k]}")
    for t, n in exp["by_topic_records"].items():
        if got.get("by_topic", {}).get(t, {}).get("records") != n: problems.append(f"{t} records, want {n}")
if problems: print("    " + "; ".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  then passed=$((passed + 1)); say "ok   $lang: $name"
  else failed=$((failed + 1)); say "FAIL $lang: $name"; sed 's/^/    stderr: /' "$work/err" | tail -5 >&2; sed 's/^/    stdout: /' "$work/out" >&2
  fi
}

for p in "$GOOD" "$BAD"; do
  bash "$REPO/infra/scripts/kafka-auth.sh" acls "$BOOTSTRAP" "$p" >/dev/null
  "$PY" "$HERE/kafka_fixture.py" create --bootstrap "$BOOTSTRAP" --prefix "$p" 2>/dev/null
  [[ -n "$registry" ]] && register "$p"
done
good="$("$PY" "$HERE/kafka_fixture.py" produce --bootstrap "$BOOTSTRAP" --prefix "$GOOD" 2>/dev/null)"
bad="$("$PY" "$HERE/kafka_fixture.py" produce --bootstrap "$BOOTSTRAP" --prefix "$BAD" --scenario bad 2>/dev/null)"
say "wrote: good $good"
say "wrote: bad  $bad"

for lang in "${langs[@]}"; do check "committed records, aborted ones skipped" "$GOOD" "$good" 0 "$lang"; done
for lang in "${langs[@]}"; do check "bad records counted, exit 1" "$BAD" "$bad" 1 "$lang"; done

# A transaction left open: its records are past the last stable offset; the consumers must
# stop there rather than wait for it.
"$PY" "$HERE/kafka_fixture.py" hold --bootstrap "$BOOTSTRAP" --prefix "$GOOD" --seconds 300 >"$work/hold" 2>/dev/null &
hold_pid=$!
for _ in $(seq 100); do grep -q open "$work/hold" 2>/dev/null && break; sleep 0.2; done
for lang in "${langs[@]}"; do check "stops at the last stable offset of an open transaction" "$GOOD" "$good" 0 "$lang"; done
kill "$hold_pid"; wait "$hold_pid" || true; hold_pid=""

echo "$passed passed, $failed failed"
(( failed == 0 ))
