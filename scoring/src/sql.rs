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
    if let Some(standing) = &config.standing {
        return standing_sql::contribution_sql(config, standing);
    }
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
pub(crate) fn ratings(config: &ScoringConfig) -> &'static str {
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
/// provider when the job allowed any; `assigned` tells the first kind (with rule
/// `providers_paid_only_for_assigned_jobs`, only those pay their provider; the agent's
/// call counts either way).
pub(crate) fn verified(config: &ScoringConfig) -> String {
    let usage = if config.rules.inference_metered_in_bytes {
        "j.prompt_bytes AS prompt_tokens,
         CASE WHEN j.max_tokens IS NULL THEN r.completion_bytes
              ELSE LEAST(r.completion_bytes, 4 * j.max_tokens) END AS completion_tokens"
    } else {
        "r.prompt_tokens, r.completion_tokens"
    };
    format!(
        "SELECT r.job_id, r.provider_key, r.model, {usage}, a.job_id IS NOT NULL AS assigned
  FROM inference_results r
  JOIN inference_jobs j ON j.job_id = r.job_id
  LEFT JOIN job_assignments a ON a.job_id = r.job_id AND a.provider_id = r.provider_id
  WHERE r.status = 'succeeded' AND (j.any_provider OR a.job_id IS NOT NULL)"
    )
}

/// The CTEs `registrations`, `prices`, `verified` and `provider_units`, each followed by
/// a comma.
pub(crate) fn verified_and_provider_units(config: &ScoringConfig) -> String {
    format!(
        "verified AS (\n  {}),\n{}",
        verified(config),
        provider_units(config)
    )
}

/// The CTEs `stake_events`, `registrations`, `prices` and `provider_units` (over a table
/// or CTE `verified`), each followed by a comma.
pub(crate) fn provider_units(config: &ScoringConfig) -> String {
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
    let assigned = if config.rules.providers_paid_only_for_assigned_jobs {
        "\n  WHERE v.assigned"
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
  LEFT JOIN prices p ON p.model = v.model{assigned}
  GROUP BY g.operator),"
    )
}

/// The CTE `weighted` over a CTE `units` (account, role, kind, units, items), then the
/// final per-(role, account) rows.
pub(crate) fn weighted_total(config: &ScoringConfig) -> String {
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
    /// With standing (poi-v3), a step 0 over the job buckets: the bonded owners of the
    /// agents called in each conversation, `conversation_owners(conversation_id,
    /// account)`, which the later steps read whole (at most one row per conversation and
    /// bonded agent owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_owners: Option<String>,
    pub message_users: String,
    pub message_replies: String,
    pub job_verified: String,
    pub job_units: String,
    pub total: String,
}

impl ScoringPlan {
    pub fn new(config: &ScoringConfig) -> ScoringPlan {
        if let Some(standing) = &config.standing {
            return standing_sql::plan(config, standing);
        }
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
            conversation_owners: None,
            message_users,
            message_replies,
            job_verified: verified(config),
            job_units,
            total,
        }
    }
}

/// The queries of poi-v3 (standing): the same three steps, with the bonds and the
/// self-dealing rules of [`StandingConfig`](crate::config::StandingConfig).
mod standing_sql {
    use super::{ScoringPlan, provider_units, ratings, verified, verified_and_provider_units};
    use crate::config::{ScoringConfig, StandingConfig};

    /// `bonds(account, bond_chr)`: each account's bond at the epoch's end (its latest
    /// standing-bond log not retracted), where above zero.
    const BONDS: &str = "bonds AS (
  SELECT account, bond_chr FROM (
    SELECT account, bond_chr,
           ROW_NUMBER() OVER (PARTITION BY account ORDER BY block_number DESC, log_index DESC
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS latest
    FROM account_bonds
    WHERE id NOT IN (SELECT retracted_event_id FROM chain_retractions)) numbered
  WHERE latest = 1 AND bond_chr > 0)";

    /// Step 0, over `agent_calls` (and `bonds`).
    const CONVERSATION_OWNERS: &str =
        "SELECT DISTINCT conversation_id, agent_owner AS account FROM agent_calls
WHERE agent_owner IN (SELECT account FROM bonds)";

    /// Users' message units, over a message bucket (or the whole archive) and
    /// `conversation_owners`, `bonds`.
    const MESSAGE_USERS: &str =
        "SELECT m.author_id AS account, 'user' AS role, 'message_used' AS kind,
       COUNT(*) AS units, COUNT(*) AS items, '' AS source
FROM chat_messages m
WHERE m.author_kind = 'human'
  AND m.author_id IN (SELECT account FROM bonds)
  AND m.id IN (
    SELECT t.trigger_message_id
    FROM call_triggers t
    JOIN chat_messages tm ON tm.id = t.trigger_message_id
    LEFT JOIN conversation_owners co
      ON co.conversation_id = t.conversation_id AND co.account = tm.author_id
    WHERE co.account IS NULL)
GROUP BY m.author_id";

    /// The rows a message bucket routes to job buckets, `(job_bucket, job_id, account,
    /// value)`: each counted rating of an agent reply (value = stars - 3). Over a
    /// message bucket and `ratings`.
    const ROUTED: &str =
        "SELECT rp.job_bucket, rp.job_id, r.account, CAST(r.rating - 3 AS BIGINT) AS value
FROM ratings r
JOIN chat_messages rp ON rp.id = r.message_id
WHERE rp.author_kind = 'agent' AND rp.job_id IS NOT NULL";

    /// The CTEs of a job bucket over `reply_stars` (the routed rows), `agent_calls`,
    /// `verified`, `bonds` and `conversation_owners`: `askers`, `counted` (the ratings
    /// that carry weight), `stars`, `served`; each followed by a comma.
    fn job_ctes(config: &ScoringConfig) -> String {
        let fb = &config.feedback;
        format!(
            "askers AS (
  SELECT job_id, trigger_author AS account FROM agent_calls WHERE trigger_author IS NOT NULL),
counted AS (
  SELECT r.job_id, r.account, r.value
  FROM reply_stars r
  JOIN agent_calls c ON c.job_id = r.job_id
  JOIN askers a ON a.job_id = r.job_id AND a.account = r.account
  LEFT JOIN conversation_owners co
    ON co.conversation_id = c.conversation_id AND co.account = r.account
  WHERE co.account IS NULL AND r.account IN (SELECT account FROM bonds)),
stars AS (SELECT job_id, SUM(value) AS stars FROM counted GROUP BY job_id),
served AS (
  SELECT c.agent_owner AS account, a.account AS asker,
         LEAST({max_pct}, GREATEST(0, {base_pct} + {star_pct} * COALESCE(s.stars, 0))) AS weight
  FROM agent_calls c
  JOIN verified v ON v.job_id = c.job_id
  JOIN askers a ON a.job_id = c.job_id
  LEFT JOIN stars s ON s.job_id = c.job_id
  WHERE a.account <> c.agent_owner AND a.account IN (SELECT account FROM bonds)),",
            max_pct = fb.max_percent,
            base_pct = fb.base_percent,
            star_pct = fb.per_star_percent,
        )
    }

    /// A job bucket's partial units, after [`job_ctes`] and `provider_units`; an agent
    /// owner's call units per asker (`source`), for the per-asker cap.
    const JOB_UNITS: &str =
        "SELECT account, role, kind, units, items, '' AS source FROM provider_units
UNION ALL
SELECT account, 'agent_developer' AS role, 'agent_call' AS kind,
       SUM(weight) AS units, COUNT(*) AS items, asker AS source
FROM served GROUP BY account, asker
UNION ALL
SELECT account, 'user' AS role, 'feedback_given' AS kind, COUNT(*) AS units, COUNT(*) AS items,
       '' AS source
FROM counted GROUP BY account";

    /// The caps (the asker's bond per source, the config's and the account's bond) and
    /// weights over `units` (summed per account, role, kind and source), then the final
    /// per-(role, account) rows; `bonds` must be defined.
    fn weighted(config: &ScoringConfig, standing: &StandingConfig) -> String {
        let w = &config.weights;
        let cap = &config.caps;
        format!(
            "per_source AS (
  SELECT u.account, u.role, u.kind, u.items,
         CASE WHEN u.kind = 'agent_call'
              THEN LEAST(u.units, COALESCE(a.bond_chr, 0) * {per_asker})
              ELSE u.units END AS units
  FROM units u
  LEFT JOIN bonds a ON a.account = u.source),
summed AS (
  SELECT account, role, kind, SUM(units) AS units, SUM(items) AS items
  FROM per_source GROUP BY account, role, kind),
weighted AS (
  SELECT u.account, u.role, u.items,
         CASE u.kind
           WHEN 'inference' THEN LEAST(u.units, {cap_i}) * {w_i}
           WHEN 'agent_call' THEN LEAST(u.units, {cap_a}, COALESCE(b.bond_chr, 0) * {per_a}) * {w_a}
           WHEN 'message_used' THEN LEAST(u.units, {cap_m}, COALESCE(b.bond_chr, 0) * {per_m}) * {w_m}
           ELSE LEAST(u.units, {cap_f}, COALESCE(b.bond_chr, 0) * {per_f}) * {w_f}
         END AS points
  FROM summed u
  LEFT JOIN bonds b ON b.account = u.account)
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
            per_a = standing.agent_call_per_chr,
            per_m = standing.message_used_per_chr,
            per_f = standing.feedback_given_per_chr,
            per_asker = standing.agent_call_per_asker_chr,
        )
    }

    /// The reference: the three steps as one query over the whole archive.
    pub(super) fn contribution_sql(config: &ScoringConfig, standing: &StandingConfig) -> String {
        format!(
            "-- Proof of Intelligence contributions, config {version}
WITH
{BONDS},
conversation_owners AS ({CONVERSATION_OWNERS}),
{ratings},
reply_stars AS ({ROUTED}),
{verified_and_providers}
{job_ctes}
units AS (
  SELECT account, role, kind, source, SUM(units) AS units, SUM(items) AS items FROM (
    SELECT account, role, kind, units, items, source FROM ({MESSAGE_USERS}) message_units
    UNION ALL
    SELECT account, role, kind, units, items, source FROM ({JOB_UNITS}) job_units) all_units
  GROUP BY account, role, kind, source),
{weighted}",
            version = config.version,
            ratings = ratings(config),
            verified_and_providers = verified_and_provider_units(config),
            job_ctes = job_ctes(config),
            weighted = weighted(config, standing),
        )
    }

    pub(super) fn plan(config: &ScoringConfig, standing: &StandingConfig) -> ScoringPlan {
        ScoringPlan {
            conversation_owners: Some(format!("WITH\n{BONDS}\n{CONVERSATION_OWNERS}\n")),
            message_users: format!("WITH\n{BONDS}\n{MESSAGE_USERS}\n"),
            message_replies: format!("WITH\n{ratings}\n{ROUTED}\n", ratings = ratings(config)),
            job_verified: verified(config),
            job_units: format!(
                "WITH\n{providers}\n{BONDS},\n{job_ctes}\nunits AS ({JOB_UNITS})\nSELECT account, role, kind, units, items, source FROM units\n",
                providers = provider_units(config),
                job_ctes = job_ctes(config),
            ),
            total: format!(
                "WITH\n{BONDS},\nunits AS (\n  SELECT account, role, kind, source, SUM(units) AS units, SUM(items) AS items\n  FROM partial_units GROUP BY account, role, kind, source),\n{weighted}",
                weighted = weighted(config, standing)
            ),
        }
    }
}
