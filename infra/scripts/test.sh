#!/usr/bin/env bash
# The whole test suite: starts (or reuses) the real services the tests need, builds the
# workspace once (the `chorus` binary included: end-to-end tests run it as a process),
# then runs every test with cargo-nextest. Prints each phase's seconds.
#   infra/scripts/test.sh [extra nextest args]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$CHORUS_REPO"

phase_start=$(date +%s)
phase() { local now; now=$(date +%s); echo "[phase] $1 $(( now - phase_start ))s"; phase_start=$now; }

bash infra/scripts/start.sh kafka clickhouse anvil registry llama embed
command -v cargo-nextest >/dev/null || bash infra/scripts/install.sh tools
# The example consumers (Python, TypeScript, Go) the consumers test runs: skipped when
# up to date.
bash infra/scripts/install.sh consumers
phase services

log "building the workspace (binaries and test targets)"
# --timings: target/cargo-timings/ gets an HTML report of where the build time went.
cargo build --workspace --bins --tests --locked --timings
phase build

log "running the tests"
status=0
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?
phase tests
exit "$status"
