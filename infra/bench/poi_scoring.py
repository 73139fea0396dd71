#!/usr/bin/env python3
"""PoI scoring benchmark: DataFusion (`chorus-bench poi query`) beside DuckDB, same SQL, same Parquet.

    infra/scripts/install.sh duckdb
    cargo build --bin chorus
    ~/.chorus/venv/bin/python infra/bench/poi_scoring.py --events 10000000

1. `chorus-bench poi generate` writes a synthetic workload (users, agent calls, inference jobs
   and results, replies, ratings, provider registrations, 2% duplicates) as the Parquet
   archive the scorer reads, co-partitioned into buckets by job and by message.
2. `chorus-bench poi query` runs the scorer's bucketed plan with DataFusion (memory pool limit,
   spilling) and writes the plan's SQL steps it ran.
3. DuckDB runs those same SQL steps bucket by bucket over the same Parquet files, moving
   the per-bucket results between steps as Arrow tables.
4. The same again for the one-query form over the whole archive (`--whole`), unless
   --plan-only.
Each engine runs in its own process, --runs times (the median query time is shown);
peak memory is the highest max RSS (wait4) of those processes.
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
          "chat_messages", "feedback", "provider_registrations", "chain_retractions",
          "call_triggers", "account_bonds"]

DUCKDB_WHOLE = r"""
import duckdb, json, sys, time
archive, sql_file, out_file, threads, tables = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split(",")
con = duckdb.connect()
if threads > 0:
    con.execute(f"SET threads TO {threads}")
for t in tables:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{archive}/{t}/*.parquet')")
sql = open(sql_file).read()
start = time.time()
rows = con.execute(sql).fetchall()
seconds = time.time() - start
rows = [{"role": r[0], "account": r[1], "points": int(r[2]), "items": int(r[3])} for r in rows]
json.dump({"seconds": seconds, "rows": rows}, open(out_file, "w"))
"""

# The scorer's plan (scoring/src/sql.rs, ScoringPlan) step by step, as engine::run_plan
# runs it: message buckets, reply rows routed to their job's bucket, job buckets, total.
DUCKDB_PLAN = r"""
import duckdb, json, sys, time
import pyarrow as pa, pyarrow.compute as pc
archive, plan_file, out_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
plan = json.load(open(plan_file))
buckets = json.load(open(f"{archive}/archive.json"))["buckets"]
con = duckdb.connect()
if threads > 0:
    con.execute(f"SET threads TO {threads}")
for t in ["provider_registrations", "chain_retractions", "account_bonds"]:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{archive}/{t}/bucket-00000.parquet')")
def bucket_views(bucket, tables):
    for t in tables:
        con.execute(f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet('{archive}/{t}/bucket-{bucket:05d}.parquet')")
units_schema = pa.schema([("account", pa.string()), ("role", pa.string()), ("kind", pa.string()),
                          ("units", pa.int64()), ("items", pa.int64()), ("source", pa.string())])
def units(table):
    # poi-v3's steps add the asker of the calls as a sixth column (`source`).
    if table.num_columns == 5:
        table = table.append_column("source", pa.array([""] * table.num_rows, pa.string()))
    return table.rename_columns(units_schema.names).cast(units_schema)
start = time.time()
partials, replies = [], []
# Step 0 (poi-v3 only): (conversation, bonded agent owner) pairs of every job bucket.
owners = pa.table({"conversation_id": pa.array([], pa.string()), "account": pa.array([], pa.string())})
if plan.get("conversation_owners"):
    parts = []
    for b in range(buckets):
        bucket_views(b, ["inference_jobs", "job_assignments", "inference_results", "agent_calls"])
        parts.append(con.sql(plan["conversation_owners"]).to_arrow_table().cast(owners.schema))
    owners = pa.concat_tables(parts)
    con.register("owner_parts", owners)
    owners = con.sql("SELECT DISTINCT conversation_id, account FROM owner_parts").to_arrow_table()
    con.unregister("owner_parts")
con.register("conversation_owners", owners)
for b in range(buckets):
    bucket_views(b, ["chat_messages", "feedback", "call_triggers"])
    partials.append(units(con.sql(plan["message_users"]).to_arrow_table()))
    replies.append(con.sql(plan["message_replies"]).to_arrow_table())
replies = pa.concat_tables(replies)
for b in range(buckets):
    bucket_views(b, ["inference_jobs", "job_assignments", "inference_results", "agent_calls"])
    reply_stars = replies.filter(pc.equal(replies["job_bucket"], b))
    con.register("reply_stars", reply_stars)
    con.register("verified", con.sql(plan["job_verified"]).to_arrow_table())
    partials.append(units(con.sql(plan["job_units"]).to_arrow_table()))
    con.unregister("reply_stars")
    con.unregister("verified")
con.register("partial_units", pa.concat_tables(partials))
rows = con.execute(plan["total"]).fetchall()
seconds = time.time() - start
rows = [{"role": r[0], "account": r[1], "points": int(r[2]), "items": int(r[3])} for r in rows]
json.dump({"seconds": seconds, "rows": rows}, open(out_file, "w"))
"""


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
    parser.add_argument("--bench", default="target/bench-dev/chorus-bench")
    parser.add_argument("--work", default=None, help="directory for the archive (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=2048, help="DataFusion memory pool limit")
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = its default)")
    parser.add_argument("--archive", default=None, help="score this existing archive instead of generating one")
    parser.add_argument("--plan-only", action="store_true", help="skip the one-query form")
    parser.add_argument("--runs", type=int, default=3, help="runs per engine and form; the median is shown")
    parser.add_argument("--scoring-config", default=None, help="scoring config for `poi query` (default: the shipped default, poi-v3)")
    args = parser.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="chorus-poi-bench-")
    os.makedirs(work, exist_ok=True)
    if args.archive:
        archive = args.archive
    else:
        archive = os.path.join(work, "archive")
        print(f"generating {args.events:,} events into {archive} ...", flush=True)
        gen_seconds, _ = run([args.bench, "--log", "warn", "poi", "generate", "--events", str(args.events), "--out", archive])
        print(f"  {gen_seconds:.1f} s", flush=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(archive) for f in fs)
    buckets = json.load(open(os.path.join(archive, "archive.json")))["buckets"]
    print(f"archive: {size / 2**20:.0f} MiB of Parquet in {buckets} buckets", flush=True)

    runs = []  # (name, query seconds, process seconds, peak RSS MiB, rows, form)
    forms = [("plan", "bucketed plan", DUCKDB_PLAN)]
    if not args.plan_only:
        forms.append(("whole", "one query, whole archive", DUCKDB_WHOLE))
    def repeated(name, form, cmd, out):
        """Runs cmd args.runs times; keeps the median query time and the highest peak RSS."""
        results = []
        for _ in range(args.runs):
            wall, rss = run(cmd, out if name.startswith("DataFusion") else None)
            results.append((json.load(open(out)), wall, rss))
        results.sort(key=lambda r: r[0]["seconds"])
        result, wall, _ = results[len(results) // 2]
        runs.append((name, result["seconds"], wall, max(r[2] for r in results), result["rows"], form))
        print(f"  {name}: " + ", ".join(f"{r[0]['seconds']:.2f} s" for r in results), flush=True)

    for form, label, duck_runner in forms:
        sql_file = os.path.join(work, f"{form}.sql")
        df_out = os.path.join(work, f"datafusion-{form}.json")
        extra = ["--whole"] if form == "whole" else []
        repeated(f"DataFusion, {label}", form,
                 [args.bench, "--log", "warn", "poi", "query", "--archive", archive, *extra,
                  "--sql-out", sql_file, "--memory-mb", str(args.memory_mb),
                  *(["--scoring-config", args.scoring_config] if args.scoring_config else [])], df_out)
        duck_out = os.path.join(work, f"duckdb-{form}.json")
        duck_args = [archive, sql_file, duck_out, str(args.threads)]
        if form == "whole":
            duck_args.append(",".join(TABLES))
        repeated(f"DuckDB, {label}", form, [sys.executable, "-c", duck_runner, *duck_args], duck_out)

    key = lambda r: (r["role"], r["account"])
    reference = sorted(runs[0][4], key=key)
    same = all(sorted(r[4], key=key) == reference for r in runs)
    duck_seconds = {form: s for name, s, _, _, _, form in runs if name.startswith("DuckDB")}
    print()
    print(f"PoI scoring over {args.events:,} events ({len(reference):,} contributors), {os.cpu_count()} cores")
    print(f"{'engine':<40} {'query s':>8} {'events/s':>12} {'process s':>10} {'peak RSS MiB':>13} {'speed vs DuckDB':>16}")
    for name, query_s, wall, rss, _, form in runs:
        print(f"{name:<40} {query_s:>8.2f} {args.events / query_s:>12,.0f} {wall:>10.2f} {rss:>13.0f} {duck_seconds[form] / query_s:>16.2f}")
    print(f"identical results: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
