//! The scoring query. The SQL texts, generated from the config, run unchanged on
//! DataFusion (the scorer) and on DuckDB (the benchmark's comparison), over the archive
//! tables. They use integer arithmetic only and no division, so both engines give the
//! same numbers bit for bit. The archive holds each event once and each assignment
//! (job, provider) once (the archive writer deduplicates), so the queries read the
//! tables as they are: no `DISTINCT`.
//!
//! Two forms give the same rows:
//! - [`contribution_sql`]: one query over the whole archive (the reference);
//! - [`ScoringPlan`]: the same arithmetic bucket by bucket over the co-partitioned
//!   archive, so that no join holds more than one bucket (what the scorer runs).

use crate::config::ScoringConfig;

/// The SQL of the contribution query: one row per (role, account) with
/// `points` = C_i = sum_k P(k) * min(N(i, k), cap_k) and `items` (counted items).
pub fn contribution_sql(config: &ScoringConfig) -> String {
    let fb = &config.feedback;
    format!(
        "-- Proof of Intelligence contributions, config {version}
WITH
{common}
replies AS (
  SELECT id AS reply_id, job_id FROM chat_messages
  WHERE author_kind = 'agent' AND job_id IS NOT NULL),
{ratings},
reply_ratings AS (
  SELECT message_id, SUM(rating - 3) AS stars FROM ratings GROUP BY message_id),
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
  FROM ratings
  WHERE message_id IN (SELECT reply_id FROM replies)
  GROUP BY account),
units AS (
  SELECT account, role, kind, units, items FROM provider_units
  UNION ALL SELECT account, role, kind, units, items FROM developer_units
  UNION ALL SELECT account, role, kind, units, items FROM message_units
  UNION ALL SELECT account, role, kind, units, items FROM feedback_units),
{weighted}",
        version = config.version,
        common = verified_and_provider_units(config),
        ratings = ratings(config),
        weighted = weighted_total(config),
        max_pct = fb.max_percent,
        base_pct = fb.base_percent,
        star_pct = fb.per_star_percent,
    )
}

/// The ratings that count, as a table `ratings(id, message_id, account, rating)`: every
/// row of `feedback`, or (rule `one_rating_per_rater_and_reply`) the first per rater and
/// message. All ratings of a message are in its bucket, so a bucket's answer is the
/// whole archive's.
fn ratings(config: &ScoringConfig) -> &'static str {
    if config.rules.one_rating_per_rater_and_reply {
        "ratings AS (
  SELECT id, message_id, account, rating FROM (
    SELECT id, message_id, account, rating,
           ROW_NUMBER() OVER (PARTITION BY account, message_id ORDER BY id
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS nth
    FROM feedback) numbered
  WHERE nth = 1)"
    } else {
        "ratings AS (SELECT id, message_id, account, rating FROM feedback)"
    }
}

/// The verified inference work: succeeded jobs served by an assigned provider, or by any
/// provider when the job allowed any.
const VERIFIED: &str =
    "SELECT r.job_id, r.provider_key, r.model, r.prompt_tokens, r.completion_tokens
  FROM inference_results r
  JOIN inference_jobs j ON j.job_id = r.job_id
  LEFT JOIN job_assignments a ON a.job_id = r.job_id AND a.provider_id = r.provider_id
  WHERE r.status = 'succeeded' AND (j.any_provider OR a.job_id IS NOT NULL)";

/// The CTEs `registrations`, `prices`, `verified` and `provider_units`, each followed by
/// a comma.
fn verified_and_provider_units(config: &ScoringConfig) -> String {
    format!("verified AS (\n  {VERIFIED}),\n{}", provider_units(config))
}

/// The CTEs `stake_events`, `registrations`, `prices` and `provider_units` (over a table
/// or CTE `verified`), each followed by a comma.
fn provider_units(config: &ScoringConfig) -> String {
    let mut prices: Vec<String> = config
        .models
        .iter()
        .map(|(model, price)| format!("('{model}', {}, {})", price.prompt, price.completion))
        .collect();
    if prices.is_empty() {
        prices.push("('', 0, 0)".into());
    }
    let prices = prices.join(", ");
    let dp = config.default_model.prompt;
    let dc = config.default_model.completion;
    // The stake at the epoch's end: the total of each provider's latest registry log.
    let staked = if config.rules.providers_paid_only_if_staked_at_epoch_end {
        "\n    AND provider_key IN (SELECT provider_key FROM stake_events WHERE latest = 1 AND total_stake <> '0')"
    } else {
        ""
    };
    format!(
        "stake_events AS (
  SELECT provider_key, operator, registers, total_stake,
         ROW_NUMBER() OVER (PARTITION BY provider_key ORDER BY block_number DESC, log_index DESC
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS latest
  FROM provider_registrations
  WHERE id NOT IN (SELECT retracted_event_id FROM chain_retractions)),
registrations AS (
  SELECT provider_key, MIN(operator) AS operator
  FROM stake_events
  WHERE registers{staked}
  GROUP BY provider_key),
prices AS (SELECT * FROM (VALUES {prices}) AS p(model, prompt_price, completion_price)),
provider_units AS (
  SELECT g.operator AS account, 'provider' AS role, 'inference' AS kind,
         SUM(v.prompt_tokens * COALESCE(p.prompt_price, {dp})
             + v.completion_tokens * COALESCE(p.completion_price, {dc})) AS units,
         COUNT(*) AS items
  FROM verified v
  JOIN registrations g ON g.provider_key = v.provider_key
  LEFT JOIN prices p ON p.model = v.model
  GROUP BY g.operator),"
    )
}

/// The CTE `weighted` over a CTE `units` (account, role, kind, units, items), then the
/// final per-(role, account) rows.
fn weighted_total(config: &ScoringConfig) -> String {
    let w = &config.weights;
    let cap = &config.caps;
    format!(
        "weighted AS (
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

/// The contribution query split into per-bucket steps. The archive is co-partitioned
/// (see [`crate::archive`]): jobs, assignments, results and agent calls by job id;
/// messages, ratings and call triggers by message id. Each step's SQL reads the tables
/// of one bucket under their usual names:
///
/// 1. for each message bucket, [`ScoringPlan::message_users`] gives users' partial
///    units, and [`ScoringPlan::message_replies`] one row per agent reply with its job,
///    the job's bucket and the reply's summed stars; the scorer routes these rows to
///    their job's bucket;
/// 2. for each job bucket, [`ScoringPlan::job_verified`] gives the bucket's verified
///    work, kept as the table `verified` (both roles read it, so it is computed once);
///    with it and the routed rows as `reply_stars`, [`ScoringPlan::job_units`] gives
///    the providers' and agent developers' partial units;
/// 3. [`ScoringPlan::total`] reads all partials as `partial_units`, adds them per
///    account and kind, then applies the caps and weights.
///
/// Caps apply to the sums, after the buckets are added, so the result does not depend
/// on the bucket count. Every step's output is at most one row per participant (or
/// per reply of one bucket), so memory follows participants and bucket size, not the
/// epoch's events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScoringPlan {
    pub message_users: String,
    pub message_replies: String,
    pub job_verified: String,
    pub job_units: String,
    pub total: String,
}

impl ScoringPlan {
    pub fn new(config: &ScoringConfig) -> ScoringPlan {
        let fb = &config.feedback;
        let message_users = format!(
            "WITH
{ratings}
SELECT author_id AS account, 'user' AS role, 'message_used' AS kind,
       COUNT(*) AS units, COUNT(*) AS items
FROM chat_messages
WHERE author_kind = 'human' AND id IN (SELECT trigger_message_id FROM call_triggers)
GROUP BY author_id
UNION ALL
SELECT account, 'user' AS role, 'feedback_given' AS kind, COUNT(*) AS units, COUNT(*) AS items
FROM ratings
WHERE message_id IN (
  SELECT id FROM chat_messages WHERE author_kind = 'agent' AND job_id IS NOT NULL)
GROUP BY account
",
            ratings = ratings(config)
        );
        let message_replies = format!(
            "WITH
{ratings}
SELECT rp.job_bucket, rp.job_id, rr.stars
FROM chat_messages rp
LEFT JOIN (SELECT message_id, SUM(rating - 3) AS stars FROM ratings GROUP BY message_id) rr
  ON rr.message_id = rp.id
WHERE rp.author_kind = 'agent' AND rp.job_id IS NOT NULL
",
            ratings = ratings(config)
        );
        let job_units = format!(
            "WITH
{common}
served AS (
  SELECT c.agent_owner AS account,
         LEAST({max_pct}, GREATEST(0, {base_pct} + {star_pct} * COALESCE(rs.stars, 0))) AS weight
  FROM agent_calls c
  JOIN verified v ON v.job_id = c.job_id
  LEFT JOIN reply_stars rs ON rs.job_id = c.job_id)
SELECT account, role, kind, units, items FROM provider_units
UNION ALL
SELECT account, 'agent_developer' AS role, 'agent_call' AS kind,
       SUM(weight) AS units, COUNT(*) AS items
FROM served GROUP BY account
",
            common = provider_units(config),
            max_pct = fb.max_percent,
            base_pct = fb.base_percent,
            star_pct = fb.per_star_percent,
        );
        let total = format!(
            "WITH
units AS (
  SELECT account, role, kind, SUM(units) AS units, SUM(items) AS items
  FROM partial_units GROUP BY account, role, kind),
{weighted}",
            weighted = weighted_total(config)
        );
        ScoringPlan {
            message_users,
            message_replies,
            job_verified: VERIFIED.to_string(),
            job_units,
            total,
        }
    }
}
