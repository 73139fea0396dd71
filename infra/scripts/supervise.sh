#!/usr/bin/env bash
# Runs a command and restarts it whenever it dies abnormally (a crash, not a clean exit),
# at most once a second. Used for llama-server: Mesa's lavapipe driver, which it runs
# on here, occasionally segfaults under concurrent requests; a restart is the
# recovery. Stopping the process group (infra/scripts/stop.sh) stops both.
set -u
while true; do
  "$@"
  status=$?
  if (( status == 0 || status == 130 || status == 143 )); then exit "$status"; fi
  echo "[supervise] $1 exited with status $status; restarting in 1 s" >&2
  sleep 1
done
