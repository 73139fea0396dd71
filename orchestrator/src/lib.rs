//! Orchestrator: decides which agents answer which messages (issue #4; not built yet).
