//! `chorus-bench post-rate`: posts pre-signed requests (the file `ingest-requests`
//! writes: `path<TAB>body` per line) open loop at a fixed rate and prints the latency
//! percentiles, each measured from the request's scheduled time (so a stalled server
//! shows up as latency, not as a lower rate: no coordinated omission). wrk, the
//! closed-loop load of `infra/bench/ingest_load.sh`, measures throughput; this measures
//! latency at a stated load, as the ingest row of issue 20 asks ("p99 <= 10 ms at 1,000
//! req/s").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct PostRateArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The requests file (`chorus-bench ingest-requests --out`); each line is sent once.
    #[arg(long)]
    requests: PathBuf,
    /// Skip this many lines first (lines another load already sent).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of load (rate x seconds requests; the file must hold that many).
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// The API key, sent as a bearer token (from the environment, not the command line).
    #[arg(long, env = "CHORUS_BENCH_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Connections kept open to the server.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

pub async fn run(args: PostRateArgs) -> anyhow::Result<()> {
    let count = args.rate as usize * args.seconds as usize;
    let text = std::fs::read_to_string(&args.requests)
        .with_context(|| format!("reading {}", args.requests.display()))?;
    let requests: Vec<(String, String)> = text
        .lines()
        .skip(args.skip)
        .take(count)
        .filter_map(|line| {
            line.split_once('\t')
                .map(|(path, body)| (format!("{}{path}", args.url), body.to_owned()))
        })
        .collect();
    if requests.len() < count {
        bail!(
            "{} holds {} requests after skipping {}, {count} needed",
            args.requests.display(),
            requests.len(),
            args.skip
        );
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let authorization = format!("Bearer {}", args.api_key);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let started = Instant::now();
    let mut posts = Vec::with_capacity(count);
    for (n, (url, body)) in requests.into_iter().enumerate() {
        let scheduled = started + interval * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, authorization) = (http.clone(), authorization.clone());
        posts.push(tokio::spawn(async move {
            let status = http
                .post(&url)
                .header("authorization", authorization)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|response| response.status().as_u16())
                .unwrap_or(0);
            (status, scheduled.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let sent_seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(count);
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for post in posts {
        let (status, ms) = post.await?;
        if status == 202 {
            latencies.push(ms);
        } else {
            *refused.entry(status).or_default() += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p / 100.0).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "post-rate: {count} requests at {} req/s (sent in {sent_seconds:.2} s): {} accepted, refused {refused:?}",
        args.rate,
        latencies.len()
    );
    println!(
        "latency from the scheduled time (ms): p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        at(50.0),
        at(90.0),
        at(99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
