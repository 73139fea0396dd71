//! The end-to-end tests: one binary of modules, against the real local services
//! (`infra/scripts/start.sh`). Shared helpers live in the `chorus-integration-tests`
//! library (`tests/`); nextest runs every test in its own process.

mod analytics;
mod attacks;
mod cluster;
mod consumers;
mod contracts;
mod faults;
mod faults_live;
mod indexer;
mod inference;
mod kafka_pipeline;
mod live_path;
mod llama_backend;
mod operations;
mod scoring;
mod services;
mod wallets;
