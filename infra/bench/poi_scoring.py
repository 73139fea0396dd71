#!/usr/bin/env python3
"""PoI scoring benchmark: DataFusion (`chorus poi query`) beside DuckDB, same SQL, same Parquet.

    infra/scripts/install.sh duckdb
    cargo build --bin chorus
    ~/.chorus/venv/bin/python infra/bench/poi_scoring.py --events 10000000

1. `chorus poi generate` writes a synthetic workload (users, agent calls, inference jobs
   and results, replies, ratings, provider registrations, 2% duplicates) as the Parquet
   archive the scorer reads.
2. `chorus poi query` runs the contribution SQL on it with DataFusion (memory pool limit,
   spilling) and writes the SQL text it ran.
3. DuckDB runs that same SQL text over views of the same Parquet files.
Each engine runs in its own process; peak memory is that process's max RSS (wait4).
The results must be identical row for row. Prints a table; asserts nothing about speed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TABLES = ["inference_jobs", "job_assignments", "inference_results", "agent_calls",
          "chat_messages", "feedback", "provider_registrations", "chain_retractions"]

DUCKDB_RUNNER = r"""
import duckdb, json, sys, time
archive, sql_file, out_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = duckdb.connect()
if threads > 0:
    con.execute(f"SET threads TO {threads}")
for t in %s:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{archive}/{t}/*.parquet')")
sql = open(sql_file).read()
start = time.time()
rows = con.execute(sql).fetchall()
seconds = time.time() - start
rows = [{"role": r[0], "account": r[1], "points": int(r[2]), "items": int(r[3])} for r in rows]
json.dump({"seconds": seconds, "rows": rows}, open(out_file, "w"))
""" % TABLES


def run(cmd, stdout_path=None):
    """Runs cmd; returns (wall seconds, peak RSS MiB)."""
    start = time.time()
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE if False else None)
    _, status, usage = os.wait4(proc.pid, 0)
    if stdout_path:
        out.close()
    if status != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd)}")
    return time.time() - start, usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--chorus", default="target/debug/chorus")
    parser.add_argument("--work", default=None, help="directory for the archive (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=2048, help="DataFusion memory pool limit")
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = its default)")
    args = parser.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="chorus-poi-bench-")
    archive = os.path.join(work, "archive")
    sql_file = os.path.join(work, "score.sql")
    print(f"generating {args.events:,} events into {archive} ...", flush=True)
    gen_seconds, _ = run([args.chorus, "--log", "warn", "poi", "generate", "--events", str(args.events), "--out", archive])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(archive) for f in fs)
    print(f"  {gen_seconds:.1f} s, {size / 2**20:.0f} MiB of Parquet", flush=True)

    df_out = os.path.join(work, "datafusion.json")
    df_wall, df_rss = run([args.chorus, "--log", "warn", "poi", "query", "--archive", archive,
                           "--sql-out", sql_file, "--memory-mb", str(args.memory_mb)], df_out)
    df = json.load(open(df_out))

    duck_out = os.path.join(work, "duckdb.json")
    duck_wall, duck_rss = run([sys.executable, "-c", DUCKDB_RUNNER, archive, sql_file, duck_out, str(args.threads)])
    duck = json.load(open(duck_out))

    key = lambda r: (r["role"], r["account"])
    same = sorted(df["rows"], key=key) == sorted(duck["rows"], key=key)
    print()
    print(f"PoI scoring over {args.events:,} events ({len(df['rows']):,} contributors), {os.cpu_count()} cores")
    print(f"{'engine':<28} {'query s':>8} {'events/s':>12} {'process s':>10} {'peak RSS MiB':>13} {'speed vs DuckDB':>16}")
    for name, query_s, wall, rss in [("DataFusion (chorus)", df["seconds"], df_wall, df_rss),
                                     ("DuckDB (same SQL)", duck["seconds"], duck_wall, duck_rss)]:
        print(f"{name:<28} {query_s:>8.2f} {args.events / query_s:>12,.0f} {wall:>10.2f} {rss:>13.0f} {duck['seconds'] / query_s:>16.2f}")
    print(f"identical results: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
