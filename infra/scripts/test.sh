#!/usr/bin/env bash
# The whole test suite: starts (or reuses) the real services the tests need, builds the
# workspace once (the `chorus` binary included: end-to-end tests run it as a process),
# then runs every test with cargo-nextest.
#   infra/scripts/test.sh [extra nextest args]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$CHORUS_REPO"

bash infra/scripts/start.sh kafka clickhouse anvil llama embed
command -v cargo-nextest >/dev/null || bash infra/scripts/install.sh tools

log "building the workspace"
cargo build --workspace --bins --locked
log "running the tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
