-- The analytics views of the embedded engine (`chorus sql`, DataFusion over the Parquet
-- archive). Same names and columns as the ClickHouse views
-- (infra/clickhouse/migrations/0002_views.sql). The archive holds each event once
-- (deduplicated by id when it is written), the counterpart of FINAL there.

CREATE VIEW epoch_contributions AS
SELECT epoch, account, role, MAX(points) AS points, MAX(items) AS items,
       MAX(amount_wei) AS amount_wei
FROM poi_scores
GROUP BY epoch, account, role;

CREATE VIEW agent_leaderboard AS
SELECT s.agent_id, s.calls, s.succeeded, s.tokens,
       COALESCE(f.ratings, 0) AS ratings, COALESCE(f.rating_sum, 0) AS rating_sum
FROM (
    SELECT c.agent_id, COUNT(*) AS calls,
           SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
           SUM(COALESCE(CAST(r.prompt_tokens AS BIGINT) + CAST(r.completion_tokens AS BIGINT), 0)) AS tokens
    FROM agent_calls c
    LEFT JOIN inference_results r ON r.job_id = c.job_id
    GROUP BY c.agent_id
) s
LEFT JOIN (
    SELECT m.author_id AS agent_id, COUNT(*) AS ratings, SUM(fb.rating) AS rating_sum
    FROM feedback fb
    JOIN chat_messages m ON m.id = fb.message_id
    WHERE m.author_kind = 'agent'
    GROUP BY m.author_id
) f ON f.agent_id = s.agent_id;

CREATE VIEW provider_stats AS
SELECT provider_id, model, COUNT(*) AS jobs,
       SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(prompt_tokens) AS prompt_tokens,
       SUM(completion_tokens) AS completion_tokens,
       SUM(latency_ms) AS latency_ms_total,
       ROUND(AVG(latency_ms), 1) AS avg_latency_ms
FROM inference_results
GROUP BY provider_id, model;

CREATE VIEW user_activity AS
SELECT account, SUM(message) AS messages, SUM(rated) AS feedback_given,
       COUNT(DISTINCT conversation_id) AS conversations
FROM (
    SELECT author_id AS account, conversation_id, 1 AS message, 0 AS rated
    FROM chat_messages WHERE author_kind = 'human'
    UNION ALL
    SELECT account, conversation_id, 0 AS message, 1 AS rated
    FROM feedback
) activity
GROUP BY account;

CREATE VIEW checkpoint_history AS
SELECT epoch, merkle_root, manifest_hash, config_hash, total_amount_wei, accounts,
       chain_id, distributor, tx_hash, time
FROM poi_checkpoints;
