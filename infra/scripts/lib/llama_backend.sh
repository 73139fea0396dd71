#!/usr/bin/env bash
# Which llama-server backend to run, decided from what was tried on this machine, not from
# CPU flags: the wheel's CPU backend needs instruction sets that its build assumes (AVX-512
# and more on some builds), and flag names differ subtly (`avx_vnni` is not `avx512_vnni`),
# so the only reliable answer is to start it on the model and see. Sourced by install.sh;
# the recorded cases are in llama_backend_test.sh (run by the test suite).
#
#   choose_llama_backend WHEEL_CPU SOURCE_BUILD
#     WHEEL_CPU     outcome of starting the wheel's CPU backend on the model and generating
#                   a few tokens: ok | sigill | failed
#     SOURCE_BUILD  outcome of building llama-server from llama.cpp's source for this CPU:
#                   untried | ok | failed
#   prints: BACKEND<TAB>WHY, BACKEND one of
#     wheel-cpu     the wheel's CPU backend (fast: ~90 tokens/s for SmolLM2-135M on 2 cores)
#     need-source   the wheel cannot run here and no source build was tried yet: build one
#     source        llama-server built here from source, CPU backend
#     wheel-vulkan  last resort: every layer on Vulkan over Mesa's lavapipe (~100x slower)
choose_llama_backend() {
  local wheel="$1" source="${2:-untried}"
  case "$wheel" in
    ok) printf 'wheel-cpu\tthe wheel'"'"'s CPU backend started and generated on this CPU\n'; return ;;
    sigill) ;;
    failed) ;;
    *) printf 'invalid\tunknown wheel outcome %q\n' "$wheel"; return 1 ;;
  esac
  local why_wheel
  if [[ "$wheel" == sigill ]]; then
    why_wheel="the wheel's CPU backend died with SIGILL (built for instructions this CPU lacks)"
  else
    why_wheel="the wheel's CPU backend did not start or did not generate"
  fi
  case "$source" in
    untried) printf 'need-source\t%s\n' "$why_wheel" ;;
    ok) printf 'source\t%s; built from llama.cpp source for this CPU\n' "$why_wheel" ;;
    failed) printf 'wheel-vulkan\t%s and the source build failed; falling back to Vulkan on lavapipe (about 100x slower)\n' "$why_wheel" ;;
    *) printf 'invalid\tunknown source-build outcome %q\n' "$source"; return 1 ;;
  esac
}

# probe_wheel_cpu LLAMA_BIN MODEL PORT LOG: starts the binary's CPU backend on the model (no
# Vulkan device visible, no layer offloaded), asks for a few tokens, stops it, and prints
# ok | sigill | failed.
probe_wheel_cpu() {
  local bin="$1" model="$2" port="$3" logfile="$4" pid status i
  GGML_VK_VISIBLE_DEVICES="" "$bin" -m "$model" --host 127.0.0.1 --port "$port" -c 512 -np 1 -t 2 -ngl 0 \
    >"$logfile" 2>&1 &
  pid=$!
  for i in $(seq 1 240); do
    if ! kill -0 "$pid" 2>/dev/null; then
      status=0; wait "$pid" || status=$?
      if (( status == 132 )) || grep -q 'Illegal instruction' "$logfile"; then echo sigill; else echo failed; fi
      return
    fi
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  local answer=0
  curl -sf -m 60 -H 'content-type: application/json' -d '{"prompt":"Hello","n_predict":8}' \
    "http://127.0.0.1:$port/completion" >/dev/null 2>&1 || answer=$?
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    if (( answer == 0 )); then echo ok; else echo failed; fi
  else
    status=0; wait "$pid" || status=$?
    if (( status == 132 )) || grep -q 'Illegal instruction' "$logfile"; then echo sigill; else echo failed; fi
  fi
}
