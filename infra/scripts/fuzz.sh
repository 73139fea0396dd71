#!/usr/bin/env bash
# Runs every cargo-fuzz target for N inputs (default 1,000,000) from fuzz/corpus and
# prints, per target, the inputs run and the outcome. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). A crash stops with its reproducer in
# fuzz/artifacts/<target>/.
#   infra/scripts/fuzz.sh [runs] [target ...]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$CHORUS_REPO/fuzz"
runs="${1:-1000000}"; shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=(kafka_record ingest_body chain_log provider_response)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cargo +nightly fuzz build -O
printf '%-20s %12s %10s %10s %s\n' target inputs seconds corpus outcome
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  start=$(date +%s)
  if out=$(cargo +nightly fuzz run -O "$target" "corpus/$target" -- -runs="$runs" -max_len=8192 2>&1); then
    outcome=clean
  else
    outcome="CRASH (see fuzz/artifacts/$target)"
  fi
  done_runs=$(grep -oE 'Done [0-9]+ runs' <<<"$out" | grep -oE '[0-9]+' || echo "?")
  corpus=$(ls "corpus/$target" | wc -l)
  printf '%-20s %12s %10s %10s %s\n' "$target" "$done_runs" "$(( $(date +%s) - start ))" "$corpus" "$outcome"
  [[ "$outcome" == clean ]] || { tail -40 <<<"$out" >&2; exit 1; }
done
