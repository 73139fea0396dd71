#!/usr/bin/env bash
# Profiles one benchmark command with perf (Debian's linux-perf) and draws its flame
# graph with inferno (`cargo install inferno`), as issue 20 asks: every path's run is
# profiled before it is changed.
#
#   infra/bench/flamegraph.sh NAME [--freq HZ] -- COMMAND [ARGS...]
#
# writes docs/perf/NAME.svg (all processes the command starts, e.g. the `chorus ingest`
# child of the ingest benchmark, are sampled: perf follows forks) and keeps the raw
# profile in target/perf/NAME.data. Stacks are unwound from DWARF (the builds keep line
# tables and no frame pointers), at 199 Hz by default to keep the data small.
set -euo pipefail
name="${1:?usage: flamegraph.sh NAME [--freq HZ] -- COMMAND...}"
shift
freq=199
while [[ $# -gt 0 && "$1" != "--" ]]; do
    case "$1" in
        --freq) freq="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "${1:-}" == "--" ]] || { echo "missing -- COMMAND" >&2; exit 2; }
shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null \
    || { echo "inferno not found (cargo install inferno)" >&2; exit 1; }
mkdir -p "$root/target/perf" "$root/docs/perf"
data="$root/target/perf/$name.data"
perf record -q -F "$freq" --call-graph dwarf,32768 -o "$data" -- "$@"
perf script --no-inline -i "$data" 2>/dev/null | inferno-collapse-perf > "$root/target/perf/$name.folded"
inferno-flamegraph --title "$name" --width 1600 --minwidth 0.2 < "$root/target/perf/$name.folded" \
    > "$root/docs/perf/$name.svg"
echo "flame graph: docs/perf/$name.svg" >&2
