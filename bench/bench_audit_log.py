"""Server time of the audit log page and its CSV export over a large log, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_audit_log.py [--events 500000] [--database sqlite|postgres|both]
                                              [--repeat 20] [--keep]

Builds a dedicated database (the SQLite file /tmp/kaltura_archive_audit_bench.sqlite3, or the PostgreSQL
database kaltura_archive_audit_bench on 127.0.0.1 as user postgres) with `--events` audit events spread over
three years (mostly the system's steps and librarians' previews, 2,000 batches, 50,000 entries), then times
GET /audit/?<filters> through Django's test client as a signed-in librarian (middleware, FilterSet, count, page,
template), and the CSV export of some selections read to the end. Target: p95 under 150 ms per page, the
browse page's target. Each database runs in its own process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchdb import drop_database, prepare_database

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = Path("/tmp/kaltura_archive_audit_bench.sqlite3")
PG_NAME = "kaltura_archive_audit_bench"
TARGET_MS = 150
RESULT_MARK = "RESULT "
PEOPLE = [f"librarian{n:02d}" for n in range(40)]
ENTRIES = 50_000
BATCHES = 2_000
ACTIONS = {  # action -> (share, dry run, by a person)
    "preview_archive_replace": (0.35, True, True),
    "copy": (0.15, False, False),
    "verify": (0.15, False, False),
    "tag_archived": (0.1, False, False),
    "replace": (0.1, False, False),
    "tag_replaced": (0.1, False, False),
    "skip": (0.04, False, False),
    "batch_approve": (0.01, False, True),
}

CASES: list[tuple[str, dict]] = [
    ("no filter, page 1", {}),
    ("no filter, page 100", {"page": "100"}),
    ("user=<a librarian>", {"user": PEOPLE[7]}),
    ("user=system", {"user": "system"}),
    ("action=batch_approve", {"action": "batch_approve"}),
    ("entry=<one entry>", {"entry": "1_e0012345"}),
    ("batch=<one batch>", {"batch": "<batch>"}),
    ("outcome=failed", {"outcome": "failed"}),
    ("mode=real", {"mode": "real"}),
    ("mode=dry_run", {"mode": "dry_run"}),
    ("one month", {"since": "<month_start>", "until": "<month_end>"}),
    ("entry + real", {"entry": "1_e0012345", "mode": "real"}),
    ("user + action + one month", {"user": PEOPLE[7], "action": "batch_approve", "since": "<month_start>"}),
    ("outcome=failed + real + one month", {"outcome": "failed", "mode": "real", "since": "<month_start>"}),
]
EXPORTS: list[tuple[str, dict]] = [
    ("export entry=<one entry>", {"entry": "1_e0012345"}),
    ("export user=<a librarian>", {"user": PEOPLE[7]}),
    ("export one month", {"since": "<month_start>", "until": "<month_end>"}),
]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def fill(events: int, now: dt.datetime) -> None:
    from django.contrib.auth.models import User

    from archive_app.models import AuditEvent, Batch

    # Events carry their own times here; the app always stamps "now".
    AuditEvent._meta.get_field("created_at").auto_now_add = False
    rng = random.Random(2024)
    creator = User.objects.create_user("bench-creator")
    Batch.objects.bulk_create([Batch(action="archive_replace", created_by=creator) for _ in range(BATCHES)])
    batch_ids = list(Batch.objects.values_list("id", flat=True))
    actions = list(ACTIONS)
    weights = [ACTIONS[action][0] for action in actions]
    span = 3 * 365 * 86400
    chunk = []
    for n in range(events):
        action = rng.choices(actions, weights)[0]
        _, dry_run, by_person = ACTIONS[action]
        outcome = "ok" if rng.random() < 0.97 else rng.choice(["failed", "refused", "skipped"])
        chunk.append(
            AuditEvent(
                created_at=now - dt.timedelta(seconds=rng.randrange(span)),
                username=rng.choice(PEOPLE) if by_person else "system",
                action=action,
                entry_id="" if action == "batch_approve" else f"1_e{rng.randrange(ENTRIES):07d}",
                batch_id=rng.choice(batch_ids),
                dry_run=dry_run,
                outcome=outcome,
                message="copy → verify → tag_archived" if dry_run else "",
                details={"bytes": rng.randrange(10**10)} if action == "copy" else {},
            )
        )
        if len(chunk) == 5000 or n == events - 1:
            AuditEvent.objects.bulk_create(chunk)
            chunk = []


def run_one(kind: str, events: int, repeat: int, keep: bool) -> None:
    os.environ["DATABASE_URL"] = prepare_database(kind, SQLITE_PATH, PG_NAME)
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
    from django.utils import timezone

    from archive_app.models import AuditEvent
    from archive_app.roles import assign_role

    log = sys.stderr
    try:
        call_command("migrate", verbosity=0)
        now = timezone.now()
        started = time.perf_counter()
        fill(events, now)
        print(f"[{kind}] {events:,} events inserted in {time.perf_counter() - started:.0f} s", file=log)
        if kind == "postgres":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        month_end = timezone.localdate(now) - dt.timedelta(days=200)
        values = {
            "<batch>": str(AuditEvent.objects.order_by("batch_id").values_list("batch_id", flat=True)[BATCHES // 2]),
            "<month_start>": (month_end - dt.timedelta(days=30)).isoformat(),
            "<month_end>": month_end.isoformat(),
        }
        client = Client()
        reader = User.objects.create_user("bench-reader")
        assign_role(reader, "librarian")  # the log is for librarians; theirs is the masked, slower view
        client.force_login(reader)

        def params_of(query: dict) -> dict:
            return {key: values.get(value, value) for key, value in query.items()}

        for name, query in CASES:
            params = params_of(query)
            for _ in range(2):
                client.get("/audit/", params)
            samples = []
            for _ in range(repeat):
                begin = time.perf_counter()
                response = client.get("/audit/", params)
                samples.append((time.perf_counter() - begin) * 1000)
                if response.status_code != 200 or b'data-testid="filter-errors"' in response.content:
                    raise SystemExit(f"[{kind}] {name}: status {response.status_code} or filter errors")
            count = response.content.split(b'data-testid="event-count">', 1)[1].split(b" ", 1)[0].decode()
            count = "10,000+" if count == "More" else count
            result = {"case": name, "database": kind, "matches": count}
            result |= {"p50": statistics.median(samples), "p95": percentile(samples, 0.95)}
            print(RESULT_MARK + json.dumps(result), flush=True)
        for name, query in EXPORTS:
            begin = time.perf_counter()
            response = client.get("/audit/export.csv", params_of(query))
            rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
            seconds = time.perf_counter() - begin
            result = {"case": name, "database": kind, "matches": f"{rows:,}", "seconds": seconds}
            result["rows_per_second"] = rows / seconds
            print(RESULT_MARK + json.dumps(result), flush=True)
    finally:
        connection.close()
        if not keep:
            drop_database(kind, SQLITE_PATH, PG_NAME)


def print_table(results: list[dict], databases: list[str]) -> None:
    pages = [result for result in results if "p95" in result]
    exports = [result for result in results if "seconds" in result]
    by_key = {(result["case"], result["database"]): result for result in results}
    width = max(len(result["case"]) for result in results)
    header = f"{'case':<{width}}" + "".join(f" | {db + ' matches':>17} {'p50 ms':>7} {'p95 ms':>7}" for db in databases)
    print(header)
    print("-" * len(header))
    for case in dict.fromkeys(result["case"] for result in pages):
        line = f"{case:<{width}}"
        for database in databases:
            result = by_key.get((case, database))
            line += f" | {result['matches']:>17} {result['p50']:7.1f} {result['p95']:7.1f}" if result else ""
        print(line)
    print()
    for case in dict.fromkeys(result["case"] for result in exports):
        line = f"{case:<{width}}"
        for database in databases:
            result = by_key.get((case, database))
            if result:
                rate = result["rows_per_second"]
                line += f" | {result['matches']:>10} rows {result['seconds']:6.2f} s {rate:8,.0f}/s"
        print(line)
    for database in databases:
        worst = max(result["p95"] for result in pages if result["database"] == database)
        verdict = "meets" if worst < TARGET_MS else "MISSES"
        print(f"{database}: worst audit log p95 {worst:.1f} ms, {verdict} the {TARGET_MS} ms target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark database in place")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_one(args.database, args.events, args.repeat, args.keep)
        return
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = []
    for database in databases:
        command = [sys.executable, __file__, "--child", "--database", database]
        command += ["--events", str(args.events), "--repeat", str(args.repeat)] + (["--keep"] if args.keep else [])
        child = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        results += [
            json.loads(line[len(RESULT_MARK) :]) for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)
        ]
        if child.returncode:
            raise SystemExit(f"{database} run failed (exit {child.returncode})")
    print(f"\nGET /audit/ server time, {args.events:,} events, {args.repeat} runs per case\n")
    print_table(results, databases)


if __name__ == "__main__":
    main()
