//! The scoring query. One SQL text, generated from the config, runs unchanged on
//! DataFusion (the scorer) and on DuckDB (the benchmark's comparison), over the archive
//! tables. It uses integer arithmetic only and no division, so both engines give the
//! same numbers bit for bit. The archive holds each event once and each assignment
//! (job, provider) once (the archive writer deduplicates), so the query reads the
//! tables as they are: no `DISTINCT`.

use crate::config::ScoringConfig;

/// The SQL of the contribution query: one row per (role, account) with
/// `points` = C_i = sum_k P(k) * min(N(i, k), cap_k) and `items` (counted items).
pub fn contribution_sql(config: &ScoringConfig) -> String {
    let mut prices: Vec<String> = config
        .models
        .iter()
        .map(|(model, price)| format!("('{model}', {}, {})", price.prompt, price.completion))
        .collect();
    if prices.is_empty() {
        prices.push("('', 0, 0)".into());
    }
    let prices = prices.join(", ");
    let w = &config.weights;
    let cap = &config.caps;
    let fb = &config.feedback;
    let dp = config.default_model.prompt;
    let dc = config.default_model.completion;
    format!(
        "-- Proof of Intelligence contributions, config {version}
WITH
registrations AS (
  SELECT provider_key, MIN(operator) AS operator
  FROM provider_registrations
  WHERE id NOT IN (SELECT retracted_event_id FROM chain_retractions)
  GROUP BY provider_key),
prices AS (SELECT * FROM (VALUES {prices}) AS p(model, prompt_price, completion_price)),
verified AS (
  SELECT r.job_id, r.provider_key, r.model, r.prompt_tokens, r.completion_tokens
  FROM inference_results r
  JOIN inference_jobs j ON j.job_id = r.job_id
  LEFT JOIN job_assignments a ON a.job_id = r.job_id AND a.provider_id = r.provider_id
  WHERE r.status = 'succeeded' AND (j.any_provider OR a.job_id IS NOT NULL)),
provider_units AS (
  SELECT g.operator AS account, 'provider' AS role, 'inference' AS kind,
         SUM(v.prompt_tokens * COALESCE(p.prompt_price, {dp})
             + v.completion_tokens * COALESCE(p.completion_price, {dc})) AS units,
         COUNT(*) AS items
  FROM verified v
  JOIN registrations g ON g.provider_key = v.provider_key
  LEFT JOIN prices p ON p.model = v.model
  GROUP BY g.operator),
replies AS (
  SELECT id AS reply_id, job_id FROM chat_messages
  WHERE author_kind = 'agent' AND job_id IS NOT NULL),
reply_ratings AS (
  SELECT message_id, SUM(rating - 3) AS stars FROM feedback GROUP BY message_id),
served AS (
  SELECT c.agent_owner AS account,
         LEAST({max_pct}, GREATEST(0, {base_pct} + {star_pct} * COALESCE(rr.stars, 0))) AS weight
  FROM agent_calls c
  JOIN verified v ON v.job_id = c.job_id
  LEFT JOIN replies rp ON rp.job_id = c.job_id
  LEFT JOIN reply_ratings rr ON rr.message_id = rp.reply_id),
developer_units AS (
  SELECT account, 'agent_developer' AS role, 'agent_call' AS kind,
         SUM(weight) AS units, COUNT(*) AS items
  FROM served GROUP BY account),
message_units AS (
  SELECT author_id AS account, 'user' AS role, 'message_used' AS kind,
         COUNT(*) AS units, COUNT(*) AS items
  FROM chat_messages
  WHERE author_kind = 'human' AND id IN (SELECT trigger_message_id FROM agent_calls)
  GROUP BY author_id),
feedback_units AS (
  SELECT account, 'user' AS role, 'feedback_given' AS kind,
         COUNT(*) AS units, COUNT(*) AS items
  FROM feedback
  WHERE message_id IN (SELECT reply_id FROM replies)
  GROUP BY account),
units AS (
  SELECT account, role, kind, units, items FROM provider_units
  UNION ALL SELECT account, role, kind, units, items FROM developer_units
  UNION ALL SELECT account, role, kind, units, items FROM message_units
  UNION ALL SELECT account, role, kind, units, items FROM feedback_units),
weighted AS (
  SELECT account, role, items,
         CASE kind
           WHEN 'inference' THEN LEAST(units, {cap_i}) * {w_i}
           WHEN 'agent_call' THEN LEAST(units, {cap_a}) * {w_a}
           WHEN 'message_used' THEN LEAST(units, {cap_m}) * {w_m}
           ELSE LEAST(units, {cap_f}) * {w_f}
         END AS points
  FROM units)
SELECT role, account, CAST(SUM(points) AS BIGINT) AS points, CAST(SUM(items) AS BIGINT) AS items
FROM weighted
GROUP BY role, account
ORDER BY role, account
",
        version = config.version,
        max_pct = fb.max_percent,
        base_pct = fb.base_percent,
        star_pct = fb.per_star_percent,
        cap_i = cap.inference,
        cap_a = cap.agent_call,
        cap_m = cap.message_used,
        cap_f = cap.feedback_given,
        w_i = w.inference,
        w_a = w.agent_call,
        w_m = w.message_used,
        w_f = w.feedback_given,
    )
}
