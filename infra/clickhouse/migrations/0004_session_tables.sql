-- The session-key events (issue 17): grants and revocations of chorus.sessions.
-- Generated like 0001 (`chorus migrate --print-event-tables` prints every table).

-- session.granted events
CREATE TABLE IF NOT EXISTS session_grants
(
    `id` String,
    `type` String,
    `version` UInt16,
    `source` String,
    `time` DateTime,
    `time_ms` Int64,
    `key` String,
    `expires_at` Int64,
    `granted_at` Int64,
    `scopes` Array(String),
    `session_key` String,
    `signature` String,
    `wallet` String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY id;

-- session.revoked events
CREATE TABLE IF NOT EXISTS session_revocations
(
    `id` String,
    `type` String,
    `version` UInt16,
    `source` String,
    `time` DateTime,
    `time_ms` Int64,
    `key` String,
    `revoked_at` Int64,
    `session_key` String,
    `signature` String,
    `wallet` String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY id;
