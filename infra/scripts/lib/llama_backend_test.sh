#!/usr/bin/env bash
# The backend decision over the machines this project has met, as recorded (CPU, its
# relevant flags, what the wheel's CPU backend did, what a source build did). Exits 1 on
# the first wrong choice. Run by the integration tests (`llama_backend_choice`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/llama_backend.sh"
fail=0
check() {
  local cpu="$1" flags="$2" wheel="$3" source="$4" want="$5" got
  got=$(choose_llama_backend "$wheel" "$source" | cut -f1) || true
  if [[ "$got" == "$want" ]]; then
    printf 'ok   %-34s %-38s wheel=%-7s source=%-8s -> %s\n' "$cpu" "$flags" "$wheel" "$source" "$got"
  else
    printf 'FAIL %-34s %-38s wheel=%-7s source=%-8s -> %s (want %s)\n' "$cpu" "$flags" "$wheel" "$source" "$got" "$want"
    fail=1
  fi
}
# Intel with AVX-512 and AVX-VNNI: the wheel's CPU backend ran at 89 tokens/s.
check "Intel Xeon (AVX-512, AVX-VNNI)" "avx2 avx512vl avx512_vnni avx_vnni" ok untried wheel-cpu
# Intel with AVX-512 but no AVX-VNNI: a flag check on avx512vl alone would pick the wheel;
# if it dies, the source build is next, never lavapipe first.
check "Intel Xeon (AVX-512, no AVX-VNNI)" "avx2 avx512vl avx512_vnni" sigill untried need-source
check "Intel Xeon (AVX-512, no AVX-VNNI)" "avx2 avx512vl avx512_vnni" sigill ok source
# AMD EPYC without AVX-512: SIGILL while loading the model, then a source build.
check "AMD EPYC (AVX2 only)" "avx2" sigill untried need-source
check "AMD EPYC (AVX2 only)" "avx2" sigill ok source
# A wheel that fails some other way (missing library) is treated like SIGILL.
check "any" "avx2" failed ok source
# Both failed: lavapipe, as the last resort.
check "AMD EPYC (AVX2 only)" "avx2" sigill failed wheel-vulkan
# Unknown outcomes are refused, not guessed.
check "any" "avx2" maybe untried invalid
exit "$fail"
