-- Views for the common questions. Each reads its tables with FINAL, so a row that a
-- replay inserted twice counts once even before the background merge collapses it.
-- Written for ClickHouse 18.16 (ANY joins with USING, no ON) and current releases.
-- The embedded engine (`chorus sql`) defines the same views with the same columns
-- (infra/analytics/views.datafusion.sql); the results agree (tests/tests/analytics.rs).

-- Contribution per account per epoch and role, as scored and paid.
CREATE VIEW IF NOT EXISTS epoch_contributions AS
SELECT epoch, account, role, max(points) AS points, max(items) AS items,
       max(amount_wei) AS amount_wei
FROM poi_scores FINAL
GROUP BY epoch, account, role;

-- Agents by calls served, successful calls, tokens and the ratings of their replies.
CREATE VIEW IF NOT EXISTS agent_leaderboard AS
SELECT agent_id, calls, succeeded, tokens, ratings, rating_sum
FROM
(
    SELECT agent_id, count() AS calls, sum(ok) AS succeeded, sum(tokens) AS tokens
    FROM (SELECT agent_id, job_id FROM agent_calls FINAL)
    ANY LEFT JOIN
    (
        SELECT job_id, toUInt64(status = 'succeeded') AS ok,
               toUInt64(prompt_tokens + completion_tokens) AS tokens
        FROM inference_results FINAL
    ) USING job_id
    GROUP BY agent_id
)
ANY LEFT JOIN
(
    SELECT author_id AS agent_id, count() AS ratings, sum(rating) AS rating_sum
    FROM (SELECT message_id AS id, rating FROM feedback FINAL)
    ANY INNER JOIN
    (SELECT id, author_id FROM chat_messages FINAL WHERE author_kind = 'agent') USING id
    GROUP BY author_id
) USING agent_id;

-- Providers by model: jobs, outcomes, tokens and latency.
CREATE VIEW IF NOT EXISTS provider_stats AS
SELECT provider_id, model,
       count() AS jobs,
       countIf(status = 'succeeded') AS succeeded,
       countIf(status = 'failed') AS failed,
       sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       sum(latency_ms) AS latency_ms_total,
       round(avg(latency_ms), 1) AS avg_latency_ms
FROM inference_results FINAL
GROUP BY provider_id, model;

-- People by messages sent, ratings given and conversations touched.
CREATE VIEW IF NOT EXISTS user_activity AS
SELECT account, sum(message) AS messages, sum(rated) AS feedback_given,
       uniqExact(conversation_id) AS conversations
FROM
(
    SELECT author_id AS account, conversation_id, toUInt64(1) AS message, toUInt64(0) AS rated
    FROM chat_messages FINAL WHERE author_kind = 'human'
    UNION ALL
    SELECT account, conversation_id, toUInt64(0) AS message, toUInt64(1) AS rated
    FROM feedback FINAL
)
GROUP BY account;

-- Every checkpoint with its transaction.
CREATE VIEW IF NOT EXISTS checkpoint_history AS
SELECT epoch, merkle_root, manifest_hash, config_hash, total_amount_wei, accounts,
       chain_id, distributor, tx_hash, time
FROM poi_checkpoints FINAL;
