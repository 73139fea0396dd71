#!/usr/bin/env python3
"""PoI scoring on both engines, same archive, same run: in-process DataFusion beside Ballista.

    infra/scripts/start.sh ballista        # builds target/ballista, starts nothing else
    python3 infra/bench/scoring_engines.py --events 1000000,10000000 --executors 1,2

For each event count:
1. `chorus-bench poi generate` writes the synthetic workload as the Parquet archive the
   scorer reads (the same generator as infra/bench/poi_scoring.py).
2. In-process: `chorus-bench poi query` runs the scorer's bucketed plan in one process
   (--memory-mb pool, all cores); peak RSS from wait4.
3. Ballista, once per executor count N: the scheduler and N executors are restarted
   (infra/scripts/stop.sh / start.sh ballista, BALLISTA_EXECUTORS=N), so that each
   process's peak RSS (VmHWM) is this query's; `chorus-bench poi query --engine ballista`
   sends the whole-archive query; the client's peak RSS from wait4.
Each prints the root of the epoch-0 claim tree its rows give; the roots must be identical
(exit 1 otherwise). Prints a table, and with --json-out the figures for docs/capacity.md.
Asserts nothing about speed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from poi_scoring import run  # noqa: E402  (wall seconds and peak RSS of a command)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHORUS_HOME = os.environ.get("CHORUS_HOME", os.path.expanduser("~/.chorus"))
CHORUS_RUN = os.environ.get("CHORUS_RUN", os.path.join(CHORUS_HOME, "run"))


def peak_rss_mib(name):
    """VmHWM of a daemon started by infra/scripts (its pid file), in MiB."""
    with open(os.path.join(CHORUS_RUN, f"{name}.pid")) as f:
        pid = f.read().strip()
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def restart_ballista(executors, vcores, memory_mb):
    env = dict(os.environ, BALLISTA_EXECUTORS=str(executors), BALLISTA_VCORES=str(vcores),
               BALLISTA_MEMORY_MB=str(memory_mb))
    subprocess.run(["bash", os.path.join(REPO, "infra/scripts/stop.sh"), "ballista"], check=True, env=env)
    subprocess.run(["bash", os.path.join(REPO, "infra/scripts/start.sh"), "ballista"], check=True, env=env)
    # The executors register with the scheduler after their ports open.
    time.sleep(3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="1000000,10000000", help="comma-separated event counts")
    parser.add_argument("--executors", default="2", help="comma-separated Ballista executor counts")
    parser.add_argument("--vcores", type=int, default=1, help="task slots per executor")
    parser.add_argument("--bench", default=os.path.join(REPO, "target/ballista/ballista/chorus-bench"))
    parser.add_argument("--work", default=None, help="directory for the archives (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=2048,
                        help="memory pool: the in-process engine's, and each executor's")
    parser.add_argument("--scheduler-port", type=int, default=int(os.environ.get("BALLISTA_SCHEDULER_PORT", "50050")))
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="chorus-engines-")
    os.makedirs(work, exist_ok=True)
    scheduler = f"df://127.0.0.1:{args.scheduler_port}"
    results = []
    for events in [int(e) for e in args.events.split(",")]:
        archive = os.path.join(work, f"archive-{events}")
        if not os.path.exists(os.path.join(archive, "archive.json")):
            print(f"generating {events:,} events into {archive} ...", flush=True)
            gen_seconds, _ = run([args.bench, "--log", "warn", "poi", "generate", "--events", str(events), "--out", archive])
            print(f"  {gen_seconds:.1f} s", flush=True)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(archive) for f in fs)
        buckets = json.load(open(os.path.join(archive, "archive.json")))["buckets"]
        print(f"archive: {size / 2**20:.0f} MiB of Parquet in {buckets} buckets", flush=True)

        out = os.path.join(work, f"in-process-{events}.json")
        wall, rss = run([args.bench, "--log", "warn", "poi", "query", "--archive", archive,
                         "--memory-mb", str(args.memory_mb)], out)
        result = json.load(open(out))
        results.append({"events": events, "engine": "in-process", "executors": 0, "seconds": result["seconds"],
                        "process_seconds": wall, "rss_mib": {"scorer": rss}, "root": result["root"],
                        "contributors": len(result["rows"])})
        print(f"  in-process: {result['seconds']:.2f} s, peak RSS {rss:.0f} MiB, root {result['root']}", flush=True)

        for executors in [int(n) for n in args.executors.split(",")]:
            restart_ballista(executors, args.vcores, args.memory_mb)
            out = os.path.join(work, f"ballista-{executors}-{events}.json")
            wall, rss = run([args.bench, "--log", "warn", "poi", "query", "--archive", archive,
                             "--engine", "ballista", "--scheduler", scheduler], out)
            result = json.load(open(out))
            memory = {"client": rss, "scheduler": peak_rss_mib("ballista-scheduler")}
            for n in range(1, executors + 1):
                memory[f"executor-{n}"] = peak_rss_mib(f"ballista-executor-{n}")
            results.append({"events": events, "engine": "ballista", "executors": executors,
                            "vcores": args.vcores, "seconds": result["seconds"], "process_seconds": wall,
                            "rss_mib": memory, "root": result["root"], "contributors": len(result["rows"])})
            print(f"  ballista, {executors} executor(s): {result['seconds']:.2f} s, peak RSS "
                  + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items()) + f", root {result['root']}", flush=True)
    subprocess.run(["bash", os.path.join(REPO, "infra/scripts/stop.sh"), "ballista"], check=True)

    print()
    print(f"PoI scoring, in-process DataFusion and Ballista, {os.cpu_count()} cores, "
          f"{args.memory_mb} MiB pool per process, {args.vcores} task slot(s) per executor")
    print("| events | engine | query s | events/s | peak RSS per process (MiB) | root | same root |")
    print("|---:|---|---:|---:|---|---|---|")
    same = True
    for r in results:
        reference = next(x["root"] for x in results if x["events"] == r["events"] and x["engine"] == "in-process")
        ok = r["root"] == reference
        same &= ok
        engine = "in-process" if r["engine"] == "in-process" else f"Ballista, {r['executors']} executor(s)"
        memory = ", ".join(f"{k} {v:,.0f}" for k, v in r["rss_mib"].items())
        print(f"| {r['events']:,} | {engine} | {r['seconds']:.2f} | {r['events'] / r['seconds']:,.0f} | "
              f"{memory} | `{r['root'][:18]}…` | {'yes' if ok else 'NO'} |")
    if args.json_out:
        json.dump(results, open(args.json_out, "w"), indent=2)
    print(f"identical roots: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
