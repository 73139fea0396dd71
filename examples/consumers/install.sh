#!/usr/bin/env bash
# Installs the example consumers' dependencies from the package registries (PyPI, npm, the Go
# module proxy) and builds them. Idempotent: a part whose inputs did not change is skipped.
#   install.sh [python] [typescript] [go]      (default: all three)
# Python packages go into the venv ${CHORUS_HOME:-$HOME/.chorus}/venv (made if missing);
# TypeScript: npm ci + tsc into typescript/dist; Go: go build into go/bin/chorus-consumer-go.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHORUS_HOME="${CHORUS_HOME:-$HOME/.chorus}"
VENV="$CHORUS_HOME/venv"
NICE=(nice -n 10)

log() { printf '[consumers] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# stamp_ok STAMP INPUT...: the stamp holds the inputs' checksum from the last good install.
sum() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { local stamp="$1"; shift; [[ -f "$stamp" && "$(cat "$stamp")" == "$(sum "$@")" ]]; }

install_python() {
  local req="$HERE/python/requirements.txt" stamp="$VENV/.chorus-consumers-requirements"
  if [[ ! -x "$VENV/bin/python" ]]; then
    command -v python3 >/dev/null || die "python: python3 not found"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python: needs Python 3.11 or newer"
    python3 -m venv "$VENV"
  fi
  if stamp_ok "$stamp" "$req"; then log "python: up to date"; return; fi
  "${NICE[@]}" "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  "$VENV/bin/python" -c 'import confluent_kafka, cloudevents.core.bindings.kafka, jsonschema'
  sum "$req" >"$stamp"
  log "python: installed into $VENV"
}

install_typescript() {
  local dir="$HERE/typescript" stamp="$HERE/typescript/node_modules/.chorus-stamp"
  command -v node >/dev/null || die "typescript: node not found"
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' || die "typescript: needs Node 20 or newer"
  if ! stamp_ok "$stamp" "$dir/package-lock.json"; then
    (cd "$dir" && "${NICE[@]}" npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    sum "$dir/package-lock.json" >"$stamp"
  fi
  local out="$dir/dist/consumer.js"
  if [[ -f "$out" && -z "$(find "$dir/src" "$dir/tsconfig.json" "$stamp" -newer "$out" -print -quit)" ]]; then
    log "typescript: up to date"; return
  fi
  (cd "$dir" && "${NICE[@]}" node_modules/.bin/tsc -p .)
  chmod +x "$out"
  log "typescript: built $out"
}

install_go() {
  local dir="$HERE/go"
  command -v go >/dev/null || die "go: go not found"
  command -v gcc >/dev/null || die "go: confluent-kafka-go needs cgo: gcc not found"
  # go build is itself incremental (module and build caches); nothing to stamp.
  local out
  out="$(cd "$dir" && CGO_ENABLED=1 "${NICE[@]}" go build -o bin/chorus-consumer-go . 2>&1)" ||
    { printf '%s\n' "$out" >&2; die "go: build failed"; }
  log "go: built $dir/bin/chorus-consumer-go"
}

parts=("$@")
(( ${#parts[@]} )) || parts=(python typescript go)
for part in "${parts[@]}"; do
  case "$part" in
    python|typescript|go) "install_$part" ;;
    *) die "unknown part '$part' (python, typescript, go)" ;;
  esac
done
