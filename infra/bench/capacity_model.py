#!/usr/bin/env python3
"""The capacity model of docs/capacity.md: measured per-process figures in, a plan per DAU out.

    # 1. measure (Kafka running; the ballista build, whose chorus and chorus-bench are used)
    python3 infra/bench/capacity_model.py routers --processes 1,2,4 --out target/bench-results/routers.json
    python3 infra/bench/scoring_engines.py --events 1000000,3000000,10000000 --executors 1,2 \
        --json-out target/bench-results/engines.json
    # 2. model, table and plot
    ~/.chorus/venv/bin/python infra/bench/capacity_model.py model \
        --routers target/bench-results/routers.json --engines target/bench-results/engines.json \
        --plot docs/capacity.png

`routers` runs `chorus-bench kafka --router-processes N` for each N and keeps the router
rate and kcat's (the broker's raw produce rate, same run). `model` fits the figures,
predicts what was measured (router processes 1/2/4 from the one-process rate; Ballista
with 2 executors from 1 executor), prints the predicted and measured values side by
side, then sizes 100,000 / 1,000,000 / 10,000,000 daily active users (markdown tables on
stdout) and draws measured against predicted (PNG, matplotlib). Asserts nothing.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --- The stated workload (docs/capacity.md, "Workload") ---------------------------------
MESSAGES_PER_USER_DAY = 20        # chat messages a daily active user sends
AGENTS_PER_MESSAGE = 1.5          # agents answering each message
FEEDBACK_PER_MESSAGE = 0.3        # ratings per message
# Per answered message: an agent call, an inference job, its assignment, its result and
# the agent's reply (a chat message).
EVENTS_PER_ANSWER = 5
PEAK_TO_MEAN = 3.0                # busiest hour over the day's mean rate
TARGET_UTILISATION = 0.6          # of a process (or broker) at the peak
JOB_SECONDS = 2.0                 # a provider's mean time per inference job (GPU side)
WORKER_CONCURRENCY = 256          # jobs in flight per inference worker (async HTTP calls)
EPOCH_HOURS = 24                  # the shipped epoch (infra/poi/scoring-v3.toml)
SCORER_MEMORY_MIB = 16 * 1024     # memory of one in-process scoring machine
REPLICATION = 3                   # the cluster environment of infra/topics/topics.toml
PARTITION_MB_S = 10.0             # planning ceiling per partition (not measured here)


def per_user_day():
    """Events per DAU per day, by where they enter."""
    messages = MESSAGES_PER_USER_DAY
    answers = messages * AGENTS_PER_MESSAGE
    submitted = messages * (1 + FEEDBACK_PER_MESSAGE)            # through ingest and the router
    pipeline = answers * EVENTS_PER_ANSWER                       # orchestrator and workers
    return {"submitted": submitted, "pipeline": pipeline, "jobs": answers,
            "total": submitted + pipeline}


def measure_routers(args):
    bench = args.bench
    results = []
    for n in [int(x) for x in args.processes.split(",")]:
        secrets = os.path.join(os.environ.get("CHORUS_HOME", os.path.expanduser("~/.chorus")), "kafka-secrets")
        cmd = [bench, "--log", "warn", "--kafka-secrets-dir", secrets, "kafka", "--events", str(args.events), "--partitions", str(args.partitions),
               "--router-processes", str(n)]
        print("$ " + " ".join(cmd), flush=True)
        env = dict(os.environ)
        pidfile = os.path.join(os.environ.get("CHORUS_RUN", os.path.join(
            os.environ.get("CHORUS_HOME", os.path.expanduser("~/.chorus")), "run")), "kafka.pid")
        if os.path.exists(pidfile):
            env["CHORUS_BENCH_BROKER_PID"] = open(pidfile).read().strip()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        print(out, flush=True)
        kcat = float(re.search(r"^kcat -P .*?\s([\d.]+)\s+[\d.]+\s+1\.00$", out, re.M).group(1))
        router = float(re.search(r"^chorus router, \d+ processes.*?\s([\d.]+)\s+[\d.]+\s+[\d.]+$", out, re.M).group(1))
        payload = int(re.search(r"(\d+) bytes average payload", out).group(1))
        busy = re.search(r"cores busy in the timed window: routers ([\d.]+), broker ([\d.]+)", out)
        results.append({"processes": n, "router_events_s": router, "kcat_events_s": kcat,
                        "payload_bytes": payload,
                        "router_cores": float(busy.group(1)) if busy else None,
                        "broker_cores": float(busy.group(2)) if busy else None})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    json.dump({"cores": os.cpu_count(), "events": args.events, "runs": results}, open(args.out, "w"), indent=2)


def fit_line(points):
    """Least squares t = a + b*x over (x, t)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    mt = sum(t for _, t in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (t - mt) for x, t in points) / sxx if sxx else 0.0
    return mt - b * mx, b


def model(args):
    routers = json.load(open(args.routers))
    engines = json.load(open(args.engines))
    cores = routers["cores"]
    runs = sorted(routers["runs"], key=lambda r: r["processes"])
    one = next(r for r in runs if r["processes"] == 1)
    r1 = one["router_events_s"]
    payload = one["payload_bytes"]
    kcat = sum(r["kcat_events_s"] for r in runs) / len(runs)

    # Router processes: linear in processes (r1 each) until the machine's cores are used
    # up. Each routed event costs the CPU the routers and the broker spent per event at
    # N = 1 (measured over the timed window), so the machine tops out at
    # cores / (CPU per event); here the broker runs on the same cores as the routers.
    cpu_per_event = (one["router_cores"] + one["broker_cores"]) / r1
    ceiling = cores / cpu_per_event
    predicted_router = {r["processes"]: min(r["processes"] * r1, ceiling) for r in runs}
    router_core_rate = r1 / one["router_cores"]
    broker_core_rate = r1 / one["broker_cores"]
    print("## Checked on this machine\n")
    print(f"{cores} cores, shared by the broker and the routers. At one process the routers kept "
          f"{one['router_cores']:.2f} cores busy and the broker {one['broker_cores']:.2f}: "
          f"{router_core_rate:,.0f} events per router core-second, {broker_core_rate:,.0f} per broker "
          f"core-second; the machine's ceiling is {ceiling:,.0f} events/s.\n")
    print("| router processes | predicted events/s | measured events/s | measured / predicted |")
    print("|---:|---:|---:|---:|")
    for r in runs:
        p = predicted_router[r["processes"]]
        print(f"| {r['processes']} | {p:,.0f} | {r['router_events_s']:,.0f} | {r['router_events_s'] / p:.2f} |")

    # Scoring: t = a + b * events per engine; 2 executors predicted from 1 executor as
    # a + b/2 (the stages split evenly over task slots; a, planning and stage start-up,
    # does not).
    by_engine = {}
    for e in engines:
        key = "in-process" if e["engine"] == "in-process" else f"ballista-{e['executors']}"
        by_engine.setdefault(key, []).append((e["events"] / 1e6, e["seconds"]))
    fits = {k: fit_line(v) for k, v in by_engine.items() if len(v) >= 2}
    print("\n| scoring engine | fixed s (a) | s per million events (b) | points |")
    print("|---|---:|---:|---|")
    for k, (a, b) in fits.items():
        pts = ", ".join(f"{x:g}M: {t:.2f} s" for x, t in sorted(by_engine[k]))
        print(f"| {k} | {a:.2f} | {b:.2f} | {pts} |")
    predicted_two = None
    if "ballista-1" in fits and "ballista-2" in by_engine:
        a1, b1 = fits["ballista-1"]
        predicted_two = lambda m: a1 + b1 * m / 2
        print("\n| events | Ballista, 2 executors: predicted s (from 1 executor) | measured s | measured / predicted |")
        print("|---:|---:|---:|---:|")
        for m, t in sorted(by_engine["ballista-2"]):
            p = predicted_two(m)
            print(f"| {m:g}M | {p:.2f} | {t:.2f} | {t / p:.2f} |")

    # --- Sizing -------------------------------------------------------------------------
    w = per_user_day()
    sink_rows_s = args.sink_rows_s
    ingest_req_s = args.ingest_req_s
    print(f"\n## Sizing ({w['total']:.0f} events per daily active user per day: "
          f"{w['submitted']:.0f} submitted, {w['pipeline']:.0f} from the pipeline)\n")
    print("| daily active users | mean events/s | peak events/s | ingest | routers | orchestrators | "
          "inference workers | sinks | brokers | partitions (stage topics / jobs) | scoring a 24 h epoch | shortest epoch under 10% |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    sizing = []
    a_s, b_s = fits.get("ballista-1", fits.get("in-process"))
    a_in, b_in = fits["in-process"]
    rss_a, rss_b = fit_line([(e["events"] / 1e6, e["rss_mib"]["scorer"]) for e in engines if e["engine"] == "in-process"])
    if "ballista-2" in fits:
        # Throughput per slot with two executors, over one executor's, on the largest epoch.
        big = max(m for m, _ in by_engine["ballista-2"])
        t1 = dict(by_engine["ballista-1"])[big]
        t2 = dict(by_engine["ballista-2"])[big]
        efficiency = t1 / (2 * t2)
    else:
        efficiency = 1.0
    for dau in (100_000, 1_000_000, 10_000_000):
        mean = dau * w["total"] / 86400
        peak = mean * PEAK_TO_MEAN
        submitted_peak = dau * w["submitted"] / 86400 * PEAK_TO_MEAN
        pipeline_peak = dau * w["pipeline"] / 86400 * PEAK_TO_MEAN
        jobs_peak = dau * w["jobs"] / 86400 * PEAK_TO_MEAN
        # Two of every role at least: one can be lost (or restarted) without stopping it.
        need = lambda load, rate: max(2, math.ceil(load / (rate * TARGET_UTILISATION)))
        ingest = need(submitted_peak, ingest_req_s)
        # A router process is sized by its measured per-process rate (one core's worth
        # at most is what one pipeline loop uses).
        router = need(submitted_peak, r1)
        # The orchestrator's stages are the same transactional pipeline as the router's
        # (read_committed in, transactions out): assumed at the router's rate; it reads
        # every chat message and result and writes the calls, jobs and replies.
        orchestrator = need(pipeline_peak * 0.6 + submitted_peak, r1)
        workers = max(2, math.ceil(jobs_peak * JOB_SECONDS / WORKER_CONCURRENCY / TARGET_UTILISATION))
        sinks = need(peak, sink_rows_s)
        # Broker bytes: every event written once to its topic (submitted ones twice:
        # intake and typed), times the replication factor; a broker's share at the
        # measured single-broker produce rate (kcat, same payloads).
        write_bytes_s = (peak + submitted_peak) * payload * REPLICATION
        broker_bytes_s = kcat * payload
        by_bytes_brokers = math.ceil(write_bytes_s / (broker_bytes_s * TARGET_UTILISATION))
        # And by CPU: the broker core-seconds per routed event measured here, for every
        # event (each is written by one transactional stage and read by the next), with
        # BROKER_CORES cores per broker, times the replicas' extra appends.
        broker_cores_needed = (peak + submitted_peak) / broker_core_rate * (1 + (REPLICATION - 1) * 0.5)
        by_cpu_brokers = math.ceil(broker_cores_needed / (args.broker_cores * TARGET_UTILISATION))
        brokers = max(3, by_bytes_brokers, by_cpu_brokers)
        # A partition per group member at least (power of two, 12 minimum); the jobs
        # topic is read by the inference workers, the others by the pipeline stages.
        by_bytes = math.ceil(peak * payload / (PARTITION_MB_S * 1e6))
        pow2 = lambda n: max(12, 2 ** math.ceil(math.log2(max(n, 1))))
        partitions = f"{pow2(max(router, orchestrator, sinks, by_bytes))} / {pow2(workers)}"
        # Scoring the shipped 24 h epoch: in process while it fits the scorer's memory
        # (peak RSS grows with the epoch: fitted on the measured points) and 10% of the
        # epoch; else Ballista executors of one task slot, with the measured efficiency
        # of going from one executor to two.
        epoch_m = dau * w["total"] * EPOCH_HOURS / 24 / 1e6
        budget = 0.1 * EPOCH_HOURS * 3600
        rate_m = dau * w["total"] / 86400 / 1e6          # millions of events per second
        t_in = a_in + b_in * epoch_m
        rss_in = rss_a + rss_b * epoch_m
        if t_in <= budget and rss_in <= SCORER_MEMORY_MIB:
            engine_label = f"in-process: {t_in:,.0f} s, {rss_in / 1024:,.1f} GiB"
            a, b = a_in, b_in
        else:
            k = 2
            while a_s + b_s * epoch_m / (k * efficiency) > budget * 0.5:
                k *= 2
            t = a_s + b_s * epoch_m / (k * efficiency)
            engine_label = (f"Ballista, {k} executor slots: {t:,.0f} s "
                            f"(in-process would need {t_in:,.0f} s and {rss_in / 1024:,.0f} GiB)")
            a, b = a_s, b_s / (k * efficiency)
        # The shortest epoch that keeps scoring under 10% of it: a + b * rate * T <= 0.1 T.
        epoch = a / (0.1 - b * rate_m) if b * rate_m < 0.1 else float("inf")
        sizing.append({"dau": dau, "mean": mean, "peak": peak, "ingest": ingest, "routers": router,
                       "orchestrators": orchestrator, "workers": workers, "sinks": sinks,
                       "brokers": brokers, "partitions": partitions, "scoring": engine_label, "min_epoch_s": epoch})
        print(f"| {dau:,} | {mean:,.0f} | {peak:,.0f} | {ingest} | {router} | {orchestrator} | {workers} | "
              f"{sinks} | {brokers} | {partitions} | {engine_label} | {epoch / 60:,.1f} min |")
    print(f"\nInputs: router {r1:,.0f} events/s per process (measured here), ingest {ingest_req_s:,.0f} req/s "
          f"per process, sink {sink_rows_s:,.0f} rows/s per process, broker {kcat:,.0f} records/s of "
          f"{payload} B (kcat, same run), scoring in-process {a_in:.2f} s + {b_in:.2f} s per million events, "
          f"Ballista (1 executor, 1 slot) {a_s:.2f} s + {b_s:.2f} s per million, two executors at "
          f"{efficiency:.2f} of linear; in-process peak RSS {rss_a:.0f} MiB + {rss_b:.0f} MiB per million events.")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            sys.exit("matplotlib is missing: ~/.chorus/venv/bin/python -m pip install matplotlib")
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        xs = [r["processes"] for r in runs]
        left.plot(xs, [predicted_router[x] for x in xs], "o--", label="predicted: min(N x 1-process rate, cores / CPU per event)")
        left.plot(xs, [r["router_events_s"] for r in runs], "s-", label="measured")
        left.set_xlabel("router processes (one group)")
        left.set_ylabel("events/s, exactly once")
        left.set_xticks(xs)
        left.set_title(f"Routers on {cores} cores (broker on the same cores)")
        left.legend(fontsize=8)
        for k, pts in sorted(by_engine.items()):
            pts = sorted(pts)
            right.plot([x for x, _ in pts], [t for _, t in pts], "s-", label=f"measured: {k}")
            if k in fits:
                a, b = fits[k]
                right.plot([x for x, _ in pts], [a + b * x for x, _ in pts], ":", color="grey")
        if predicted_two:
            pts = sorted(by_engine["ballista-2"])
            right.plot([x for x, _ in pts], [predicted_two(x) for x, _ in pts], "o--",
                       label="predicted: ballista-2 from ballista-1")
        right.set_xlabel("events in the epoch (millions)")
        right.set_ylabel("query seconds")
        right.set_title("PoI scoring")
        right.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nplot: {args.plot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("routers", help="measure router processes")
    r.add_argument("--bench", default=os.path.join(REPO, "target/ballista/ballista/chorus-bench"))
    r.add_argument("--processes", default="1,2,4")
    r.add_argument("--events", type=int, default=300_000)
    r.add_argument("--partitions", type=int, default=12)
    r.add_argument("--out", default=os.path.join(REPO, "target/bench-results/routers.json"))
    m = sub.add_parser("model", help="fit, check and size")
    m.add_argument("--routers", default=os.path.join(REPO, "target/bench-results/routers.json"))
    m.add_argument("--engines", default=os.path.join(REPO, "target/bench-results/engines.json"))
    m.add_argument("--sink-rows-s", type=float, default=99_078, help="ClickHouse sink rows/s per process (BENCHMARKS.md, issue 20)")
    m.add_argument("--ingest-req-s", type=float, default=3_382, help="ingest API req/s per process (BENCHMARKS.md, issue 20)")
    m.add_argument("--broker-cores", type=int, default=8, help="cores per production broker")
    m.add_argument("--plot", default=None)
    args = parser.parse_args()
    measure_routers(args) if args.command == "routers" else model(args)


if __name__ == "__main__":
    main()
