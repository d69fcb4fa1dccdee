"""Server time of the browse page over a large mirror, per filter, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_browse.py [--entries 100000] [--database sqlite|postgres|both]
                                           [--repeat 20] [--keep] [--reuse] [--pg-name kaltura_archive_bench]

Builds a dedicated database (the SQLite file /tmp/kaltura_archive_bench.sqlite3, or the
PostgreSQL database --pg-name on 127.0.0.1 as user postgres), fills it with
tests.factories.save_dataset (~2,900 entries/s through archive_app.lib.bulk.insert), then times
GET /entries/?<filters> through Django's test client as a signed-in librarian: middleware,
FilterSet, the totals query, the page query and the template, i.e. everything but the network.
Target: p95 under 150 ms per case at 100,000 entries, under 250 ms at 1,000,000.
--keep leaves the database in place and --reuse measures one left that way (migrated to this
branch first) instead of loading again: a million entries take about 6 minutes to load.
Besides wall time it prints the CPU time per request (this process, plus on PostgreSQL the
connection's backend process, read from /proc; parallel query workers are not counted),
which moves far less than wall time when other work shares the machine.
Each database runs in its own process (Django's settings are fixed once set up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchdb import PG_SERVER, drop_database, prepare_database

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = Path("/tmp/kaltura_archive_bench.sqlite3")
PG_NAME = "kaltura_archive_bench"
TARGET_MS = 150
TARGET_MS_1M = 250
TICKS = os.sysconf("SC_CLK_TCK")
RESULT_MARK = "RESULT "

CASES: list[tuple[str, dict]] = [
    ("no filter, default sort (-created)", {}),
    ("sort -plays", {"sort": "-plays"}),
    ("sort last_played", {"sort": "last_played"}),
    ("sort -last_played", {"sort": "-last_played"}),
    ("sort -total_size", {"sort": "-total_size"}),
    ("sort name", {"sort": "name"}),
    ("created_before_years=3", {"created_before_years": "3"}),
    ("created_within_years=1", {"created_within_years": "1"}),
    ("created_from/to 2019", {"created_from": "2019-01-01", "created_to": "2019-12-31"}),
    ("unplayed_years=2", {"unplayed_years": "2"}),
    ("unplayed_years=2, sort -total_size", {"unplayed_years": "2", "sort": "-total_size"}),
    ("played_within_years=1", {"played_within_years": "1"}),
    ("never_played", {"never_played": "on"}),
    ("plays_lt=5", {"plays_lt": "5"}),
    ("category=1 (subtree)", {"category": "1"}),
    ("category=5000 (leaf)", {"category": "5000"}),
    ("category=1,2,3 sort plays", {"category": ["1", "2", "3"], "sort": "plays"}),
    ("tags=archived_to_s3", {"tags": "archived_to_s3"}),
    ("tags=lecture capture,zoom", {"tags": "lecture capture,zoom"}),
    ("tags_excluded=archived_to_s3", {"tags_excluded": "archived_to_s3"}),
    ("status=7,-1", {"status": ["7", "-1"]}),
    ("media_type=5", {"media_type": "5"}),
    ("state=archived", {"state": "archived"}),
    ("state=initial,archived", {"state": ["initial", "archived"]}),
    ("original_min=1GB", {"original_min": "1 GB"}),
    ("total 100MB-500MB", {"total_min": "100 MB", "total_max": "500 MB"}),
    ("ids (500 pasted)", {"ids": None}),  # filled in from the data
    ("include_gone", {"include_gone": "on"}),
    (
        "unplayed 3 + initial + !archived_to_s3, sort -total_size",
        {"unplayed_years": "3", "state": "initial", "tags_excluded": "archived_to_s3", "sort": "-total_size"},
    ),
    ("category 12 + created_before 2 + plays_lt 10", {"category": "12", "created_before_years": "2", "plays_lt": "10"}),
    (
        "never_played + created_before 5 + video + ready",
        {"never_played": "on", "created_before_years": "5", "media_type": "1", "status": "2"},
    ),
    (
        "played_within 2 + tags lecture + total_min 1GB",
        {"played_within_years": "2", "tags": "lecture", "total_min": "1GB"},
    ),
]


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile: with 20 samples, p95 is the 19th smallest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def server_cpu_reader(kind: str, connection):
    """A function returning the CPU clock ticks used so far by this connection's PostgreSQL
    backend (same machine, from /proc), or 0 for SQLite, which runs in this process."""
    if kind != "postgres":
        return lambda: 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")

    def ticks() -> int:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    return ticks


def target_ms(entries: int) -> int:
    return TARGET_MS_1M if entries >= 1_000_000 else TARGET_MS


def existing_database(kind: str, pg_name: str) -> str | None:
    """The DATABASE_URL of a database an earlier --keep left, or None when there is none."""
    if kind == "sqlite":
        return f"sqlite:///{SQLITE_PATH}" if SQLITE_PATH.exists() else None
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [pg_name]).fetchone()
    return f"{PG_SERVER}/{pg_name}" if found else None


def run_one(kind: str, entries: int, repeat: int, keep: bool, pg_name: str, reuse: bool, only: str) -> None:
    """In this process: build the database, time every case, print one RESULT line of JSON per case."""
    reused = existing_database(kind, pg_name) if reuse else None
    os.environ["DATABASE_URL"] = reused or prepare_database(kind, SQLITE_PATH, pg_name)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain HTTP
    os.environ["DJANGO_SETTINGS_MODULE"] = "kaltura_archive.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from archive_app.models import Entry
    from archive_app.roles import assign_role
    from tests.factories import save_dataset

    log = sys.stderr
    try:
        call_command("migrate", verbosity=0)
        if reused and Entry.objects.count() != entries:
            raise SystemExit(f"[{kind}] --reuse: the database holds {Entry.objects.count():,} entries, not {entries:,}")
        if reused:
            print(f"[{kind}] reusing the {entries:,} entries already loaded", file=log)
        else:
            started = time.perf_counter()
            save_dataset(entries, seed=2024, batch_size=5000)
            print(f"[{kind}] {entries:,} entries inserted in {time.perf_counter() - started:.0f} s", file=log)
        if kind == "postgres":
            # What a running server has soon after a load: autovacuum gathers the statistics.
            # SQLite gets none (nothing runs ANALYZE there), so it is measured as deployed.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")

        user = User.objects.filter(username="bench-librarian").first()
        if user is None:
            user = User.objects.create_user("bench-librarian", password="x" * 20)
            assign_role(user, "librarian")
        client = Client()
        client.force_login(user)
        pasted = list(Entry.objects.filter(gone=False).order_by("?").values_list("id", flat=True)[:500])
        backend_ticks = server_cpu_reader(kind, connection)
        print(f"[{kind}] load average at the first case: {os.getloadavg()[0]:.1f}", file=log)
        for name, params in CASES:
            if only not in name:
                continue
            if "ids" in params:
                params = {**params, "ids": "\n".join(pasted)}
            for _ in range(2):  # warm caches and the connection
                client.get("/entries/", params)
            samples = []
            cpu_begin, ticks_begin = time.process_time(), backend_ticks()
            for _ in range(repeat):
                begin = time.perf_counter()
                response = client.get("/entries/", params)
                samples.append((time.perf_counter() - begin) * 1000)
                if response.status_code != 200 or b'data-testid="filter-errors"' in response.content:
                    raise SystemExit(f"[{kind}] {name}: status {response.status_code} or filter errors")
            cpu_ms = (time.process_time() - cpu_begin + (backend_ticks() - ticks_begin) / TICKS) * 1000 / repeat
            # "about 512,000" when the page estimates (archive_app.mirror.selectors.ESTIMATE_ABOVE)
            count = response.content.split(b'data-testid="total-entries"', 1)[1].split(b">", 1)[1]
            count = count.split(b"<", 1)[0].decode()
            result = {
                "case": name,
                "database": kind,
                "p50": statistics.median(samples),
                "p95": percentile(samples, 0.95),
                "cpu": cpu_ms,
                "entries": count,
            }
            print(RESULT_MARK + json.dumps(result), flush=True)
        samples = []
        cpu_begin, ticks_begin = time.process_time(), backend_ticks()
        for _ in range(repeat):
            begin = time.perf_counter()
            client.get("/")
            samples.append((time.perf_counter() - begin) * 1000)
        cpu_ms = (time.process_time() - cpu_begin + (backend_ticks() - ticks_begin) / TICKS) * 1000 / repeat
        result = {
            "case": "(dashboard /, for information)",
            "database": kind,
            "entries": "",
            "cpu": cpu_ms,
            "p50": statistics.median(samples),
            "p95": percentile(samples, 0.95),
        }
        print(RESULT_MARK + json.dumps(result), flush=True)
        print(f"[{kind}] load average at the end: {os.getloadavg()[0]:.1f}", file=log)
    finally:
        connection.close()
        if not keep:
            drop_database(kind, SQLITE_PATH, pg_name)


def print_table(results: list[dict], databases: list[str], target: int) -> None:
    cases = list(dict.fromkeys(result["case"] for result in results))
    by_key = {(result["case"], result["database"]): result for result in results}
    width = max(len(case) for case in cases)
    header = f"{'case':<{width}}"
    for database in databases:
        header += f" | {database + ' matches':>16} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms':>7}"
    print(header)
    print("-" * len(header))
    worst = {}
    for case in cases:
        line = f"{case:<{width}}"
        for database in databases:
            result = by_key.get((case, database))
            if not result:
                line += f" | {'':>16} {'':>7} {'':>7} {'':>7}"
                continue
            line += f" | {result['entries']:>16} {result['p50']:7.1f} {result['p95']:7.1f} {result.get('cpu', 0):7.1f}"
            if not case.startswith("("):
                worst[database] = max(worst.get(database, 0), result["p95"])
        print(line)
    for database, p95 in worst.items():
        verdict = "meets" if p95 <= target else "MISSES"
        print(f"{database}: worst browse p95 {p95:.1f} ms, {verdict} the {target} ms target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark database in place")
    parser.add_argument("--reuse", action="store_true", help="measure the database an earlier --keep left, if any")
    parser.add_argument("--pg-name", default=PG_NAME, help="the PostgreSQL database to build (dropped first)")
    parser.add_argument("--only", default="", help="time only the cases whose name contains this text")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_one(args.database, args.entries, args.repeat, args.keep, args.pg_name, args.reuse, args.only)
        return
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = []
    for database in databases:
        command = [sys.executable, __file__, "--child", "--database", database, "--pg-name", args.pg_name]
        command += ["--entries", str(args.entries), "--repeat", str(args.repeat)] + (["--keep"] if args.keep else [])
        command += (["--reuse"] if args.reuse else []) + ["--only", args.only]
        child = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        results += [
            json.loads(line[len(RESULT_MARK) :]) for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)
        ]
        if child.returncode:
            raise SystemExit(f"{database} run failed (exit {child.returncode})")
    print(f"\nGET /entries/ server time, {args.entries:,} entries, {args.repeat} runs per case (first page)\n")
    print_table(results, databases, target_ms(args.entries))


if __name__ == "__main__":
    main()
