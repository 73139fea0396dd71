#!/usr/bin/env bash
# Runs one example consumer with the common command line (see README.md):
#   run.sh <python|typescript|go> --password-file PATH [--until-end] [--quiet] ...
# install.sh installs and builds them first.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHORUS_HOME="${CHORUS_HOME:-$HOME/.chorus}"

need() { [[ -e "$1" ]] || { echo "run.sh: $1 is missing: run $HERE/install.sh $2 first" >&2; exit 2; }; }

lang="${1:-}"
(( $# )) && shift
case "$lang" in
  python)
    need "$CHORUS_HOME/venv/bin/python" python
    exec "$CHORUS_HOME/venv/bin/python" "$HERE/python/consumer.py" "$@" ;;
  typescript|ts)
    need "$HERE/typescript/dist/consumer.js" typescript
    exec node "$HERE/typescript/dist/consumer.js" "$@" ;;
  go)
    need "$HERE/go/bin/chorus-consumer-go" go
    exec "$HERE/go/bin/chorus-consumer-go" "$@" ;;
  *)
    sed -n '2,4p' "${BASH_SOURCE[0]}" >&2
    exit 2 ;;
esac
