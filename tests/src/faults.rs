//! What the fault-table tests (`faults.rs` on one broker, `cluster.rs` on three) share:
//! the steady intake load with malformed records among it, and the reconciliation of
//! the routed topics against what was sent.

use std::collections::HashSet;
use std::time::Duration;

use chorus_runtime::kafka::{EventProducer, KafkaArgs, await_all, cloudevents_headers};
use chorus_schemas::{AnyEvent, DeadLetter, Envelope, InferenceJob, Topic};

/// How the load is spread out.
#[derive(Debug, Clone, Copy)]
pub struct IntakeLoad {
    /// Slices the events are sent in, `gap` apart.
    pub slices: usize,
    pub gap: Duration,
    /// Undecodable records among them, spread over the first slices.
    pub malformed: usize,
}

/// Sends `events` as outsiders and Chorus's roles would, in slices: what the routers
/// admit to the intake topics (registrations and conversation changes to the API's), the
/// rest (calls, jobs, results, chain logs) straight to its topic; the malformed records
/// to the intake topic; `jobs[n * per_slice..]` of `jobs` with slice n
/// (`jobs_per_slice` of them). Each slice is acknowledged before the next (a broker down
/// only delays it: the producer is idempotent and retries).
pub fn spawn_intake_load(
    kafka: &KafkaArgs,
    events: Vec<AnyEvent>,
    load: IntakeLoad,
    jobs: Vec<Envelope<InferenceJob>>,
    jobs_per_slice: usize,
) -> tokio::task::JoinHandle<()> {
    let kafka = kafka.clone();
    tokio::spawn(async move {
        let intake = kafka.topic(Topic::Intake);
        let api_intake = kafka.topic(Topic::ApiIntake);
        let producer = EventProducer::new(&kafka, "fault-load", 100_000).unwrap();
        let slice = events.len().div_ceil(load.slices);
        for (n, chunk) in events.chunks(slice).enumerate() {
            let mut pending = Vec::with_capacity(chunk.len() + 16);
            for event in chunk {
                let delivery = if chorus_router::admission(event).is_ok() {
                    let topic = if chorus_workload::submitted_by_the_api(event) {
                        &api_intake
                    } else {
                        &intake
                    };
                    producer.enqueue_any_to(topic, event).await
                } else {
                    producer.enqueue_any(event).await
                };
                pending.push(delivery.unwrap());
            }
            let malformed =
                load.malformed / load.slices + usize::from(n < load.malformed % load.slices);
            for m in 0..malformed {
                let garbage = format!("{{not json, slice {n} record {m}");
                pending.push(
                    producer
                        .enqueue_raw(
                            &intake,
                            Some(b"bad"),
                            garbage.as_bytes(),
                            Some(cloudevents_headers()),
                        )
                        .await
                        .unwrap(),
                );
            }
            for job in jobs.iter().skip(n * jobs_per_slice).take(jobs_per_slice) {
                pending.push(producer.enqueue(job).await.unwrap());
            }
            await_all(pending).await.unwrap();
            tokio::time::sleep(load.gap).await;
        }
    })
}

/// The routed topics read back (read committed) against the events sent.
#[derive(Debug)]
pub struct Routed {
    pub records: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub dead: Vec<DeadLetter>,
    /// Dead letters that are not the router's, from the intake topic, with a reason.
    pub wrongly_dead: usize,
}

/// Reads every record of `topics` (but those `ignore` picks out) and the dead letters,
/// and counts what of `expected` (the ids of `valid` records) is missing or repeated.
pub fn reconcile_routed(
    kafka: &KafkaArgs,
    topics: &HashSet<Topic>,
    expected: &HashSet<uuid::Uuid>,
    valid: usize,
    ignore: impl Fn(&AnyEvent) -> bool,
) -> Routed {
    let mut records = 0usize;
    let mut seen = HashSet::with_capacity(expected.len());
    for topic in topics {
        for record in crate::read_all(kafka, &kafka.topic(*topic)).unwrap() {
            let event = AnyEvent::decode(None, &record.payload).unwrap();
            if ignore(&event) {
                continue;
            }
            records += 1;
            seen.insert(event.id());
        }
    }
    let dead: Vec<DeadLetter> = crate::read_all(kafka, &kafka.topic(Topic::DeadLetters))
        .unwrap()
        .iter()
        .map(|r| match AnyEvent::decode(None, &r.payload).unwrap() {
            AnyEvent::DeadLetter(e) => e.data,
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    let intake = kafka.topic(Topic::Intake);
    let wrongly_dead = dead
        .iter()
        .filter(|d| d.source_topic != intake || d.reason.is_empty() || d.stage != "router")
        .count();
    Routed {
        records,
        lost: expected.difference(&seen).count(),
        duplicated: records.saturating_sub(valid),
        dead,
        wrongly_dead,
    }
}

/// The header of the reconciliation table.
pub fn print_table_header() {
    println!(
        "\n{:<14} {:>10} {:>10} {:>6} {:>11} {:>14} {:>15}",
        "stage", "in", "out", "lost", "duplicated", "dead letters", "wrongly dead"
    );
}

/// One stage's row: in, out, lost, duplicated, dead letters, wrongly dead-lettered.
pub fn print_table_row(stage: &str, counts: [u64; 6]) {
    let [input, out, lost, duplicated, dead, wrong] = counts;
    println!("{stage:<14} {input:>10} {out:>10} {lost:>6} {duplicated:>11} {dead:>14} {wrong:>15}");
}
