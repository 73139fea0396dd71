-- agent.call gains trigger_author (issue 18: the human whose message triggered the call;
-- PoI scoring counts only that human's rating). Existing databases get the column;
-- a new database creates agent_calls in 0001 and gets it here the same way. The
-- CREATE below is the table as the schemas now say (a no-op where the table exists).

ALTER TABLE agent_calls ADD COLUMN trigger_author Nullable(String) AFTER reason;

-- agent.call events
CREATE TABLE IF NOT EXISTS agent_calls
(
    `id` String,
    `type` String,
    `version` UInt16,
    `source` String,
    `time` DateTime,
    `time_ms` Int64,
    `key` String,
    `agent_id` String,
    `agent_owner` String,
    `call_id` String,
    `conversation_id` String,
    `hop` UInt32,
    `job_id` String,
    `reason` String,
    `trigger_author` Nullable(String),
    `trigger_message_id` String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY id;
