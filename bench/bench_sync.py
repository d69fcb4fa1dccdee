"""Full and incremental sync against the Kaltura simulator, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_sync.py [--entries 100000] [--database sqlite|postgres|both] [--keep]
                                         [--bursts 2000 1000 ...] [--runs 5] [--no-incremental]
                                         [--pg-name kaltura_archive_bench_sync]

Starts the simulator as its own process (`python -m kaltura_sim`, so it has its own core, as
Kaltura would), waits for GET /sim/health, then for each database runs a child process that
builds a fresh database (the SQLite file /tmp/kaltura_archive_bench_sync.sqlite3, or the
PostgreSQL database kaltura_archive_bench_sync on 127.0.0.1 as user postgres; named apart from
bench_browse.py's so the two benchmarks never drop each other's database), migrates it, resets
the simulator's counters, times sync_full and then a sync_incremental, and reads the request
counts back from GET /sim/counters (a multirequest counts once). Besides wall time it prints the CPU
seconds of the three processes that share the machine's cores: the sync, the simulator and, on
PostgreSQL, the sync connection's server backend (all from /proc).

The simulator returns entries with equal sort keys in a random order on every request, as Kaltura's search
index does; `--bursts` adds bulk uploads of those sizes, each in one createdAt second. `--runs N` syncs N times
into a fresh database each time, against the same simulator (so another tie order each time), and checks each
mirror against Kaltura: every entry the simulator holds, gone exactly those Kaltura lists as deleted, no part
listed short, counts agreeing.

Targets: 100,000 entries in under 2 minutes; 1,000,000 on PostgreSQL in 15 minutes with the sync process's peak
RSS at most 300 MB (flat in library size) and at most 2.2 list requests per 500 entries without bursts; with 5 %
of the entries in bursts of up to 2,000 a second, the mirror equal to Kaltura 5 runs out of 5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchdb import drop_database, prepare_database

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = Path("/tmp/kaltura_archive_bench_sync.sqlite3")
PG_NAME = "kaltura_archive_bench_sync"
PARTNER_ID = 1234567
SECRET = "sim-admin-secret"
TARGET_SECONDS_PER_100K = 120
TARGET_SECONDS_1M = 15 * 60
TARGET_PER_500 = 2.2
TARGET_RSS_MB = 300
RESULT_MARK = "RESULT "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sim_json(url: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{url}{path}", method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def simulator_command(entries: int, bursts: list[int], port: int) -> list[str]:
    """The simulator this benchmark runs against (`--simulator` takes one started with these arguments)."""
    command = [
        sys.executable,
        "-m",
        "kaltura_sim",
        "--port",
        str(port),
        "--entries",
        str(entries),
        "--seed",
        "1",
        "--content-scale",
        "0.0001",
        "--admin-secret",
        SECRET,
    ]
    if bursts:
        command += ["--bursts", *map(str, bursts)]
    return command


def start_simulator(entries: int, bursts: list[int]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(simulator_command(entries, bursts, port), cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    # Generating 100,000 entries takes a while: poll until the server answers.
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the simulator exited with {process.returncode}")
        try:
            health = sim_json(url, "/sim/health")
            break
        except OSError:
            time.sleep(0.5)
    print(f"simulator: {health['entries']} entries at {url}, ready in {time.monotonic() - started:.1f}s", flush=True)
    return process, url


def requests_made(url: str) -> tuple[int, dict]:
    counters = sim_json(url, "/sim/counters")["counters"]
    return sum(counters.values()), counters


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, from /proc (the machine may be shared: wall time alone misleads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """A process's resident set now, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_child(kind: str, url: str, sim_pid: int, incremental: bool, pg_name: str) -> None:
    """In its own process: Django's settings are fixed once set up, and each database needs its own."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="kaltura_archive.settings",
        DJANGO_SECRET_KEY="bench",
        DATABASE_URL=prepare_database(kind, SQLITE_PATH, pg_name),
        KALTURA_SERVICE_URL=url,
        KALTURA_PARTNERID=str(PARTNER_ID),
        KALTURA_SECRET=SECRET,
        KALTURA_USERID="bench",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from archive_app.lib.kaltura import Kaltura
    from archive_app.mirror import sync
    from archive_app.models import Entry, Flavor

    call_command("migrate", verbosity=0)
    simulated = sim_json(url, "/sim/health")["entries"]
    rss_before_sync = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    backend_pid = None
    if kind == "postgres":
        with connection.cursor() as cursor:  # the connection the sync goes on using (no CONN_MAX_AGE reset here)
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]
    backend_cpu = (lambda: cpu_seconds(backend_pid)) if backend_pid else (lambda: 0.0)

    sim_json(url, "/sim/counters/reset", "POST")
    started, cpu_started, sim_cpu_started = time.perf_counter(), time.process_time(), cpu_seconds(sim_pid)
    db_cpu_started = backend_cpu()
    run = sync.sync_full(Kaltura.from_settings())
    full_seconds = time.perf_counter() - started
    full_cpu, sim_cpu = time.process_time() - cpu_started, cpu_seconds(sim_pid) - sim_cpu_started
    db_cpu = backend_cpu() - db_cpu_started
    full_requests, full_counters = requests_made(url)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    blocked = sim_json(url, "/sim/counters")["blocked"]

    incremental_seen = incremental_seconds = incremental_requests = None
    if incremental:
        sim_json(url, "/sim/counters/reset", "POST")
        started = time.perf_counter()
        incremental_run = sync.sync_incremental(Kaltura.from_settings())
        incremental_seconds = time.perf_counter() - started
        incremental_requests, _ = requests_made(url)
        incremental_seen = incremental_run.seen

    result = {
        "database": kind,
        "simulated": simulated,
        "mirrored": Entry.objects.count(),
        "live_mirrored": Entry.objects.filter(gone=False).count(),
        "flavors": Flavor.objects.count(),
        "status": run.status,
        "created": run.created,
        "full_seconds": full_seconds,
        "full_cpu": full_cpu,
        "sim_cpu": sim_cpu,
        "db_cpu": db_cpu,
        "load": os.getloadavg()[0],
        "full_requests": full_requests,
        "full_counters": full_counters,
        "details": run.details,
        "cost_summary": run.cost_summary,
        "gone": Entry.objects.filter(gone=True).count(),
        "deleted_in_kaltura": Kaltura.from_settings().list_entries(page_size=1, statusIn="3").total_count,
        "peak_rss_mb": peak_rss,
        "rss_before_sync_mb": rss_before_sync,
        "sim_rss_mb": rss_mb(sim_pid),
        "blocked": blocked,
        "incremental_seen": incremental_seen,
        "incremental_seconds": incremental_seconds,
        "incremental_requests": incremental_requests,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def report(result: dict) -> bool:
    """Print one run's figures; True when its mirror equals Kaltura exactly."""
    mirrored, seconds, requests = result["mirrored"], result["full_seconds"], result["full_requests"]
    counters = result["full_counters"]
    per_500 = requests / (mirrored / 500) if mirrored else float("nan")
    # Every request of a full sync is a list but the session and category ones.
    lists = requests - counters.get("session.start", 0) - counters.get("category.list", 0)
    lists_per_500 = lists / (mirrored / 500) if mirrored else float("nan")
    details = result["details"]
    exact = (
        mirrored == result["simulated"]
        and result["gone"] == result["deleted_in_kaltura"]
        and not details.get("short")
        and not details.get("difference")
    )
    print(f"\n== {result['database']}")
    print(
        f"entries mirrored     {mirrored:,} of {result['simulated']:,} simulated "
        f"({result['live_mirrored']:,} live, {result['flavors']:,} flavors), run {result['status']}; "
        f"mirror {'EXACT' if exact else 'NOT EXACT'} ({result['gone']} gone, "
        f"{result['deleted_in_kaltura']} deleted in Kaltura)"
    )
    target = TARGET_SECONDS_1M if mirrored >= 1_000_000 else TARGET_SECONDS_PER_100K * max(1, mirrored / 100_000)
    verdict = "ok" if seconds <= target else "OVER"
    rate = mirrored / seconds
    print(f"full sync            {seconds:.1f} s, {rate:,.0f} entries/s  [target <= {target:.0f} s: {verdict}]")
    print(
        f"                     CPU: sync process {result['full_cpu']:.1f} s, simulator {result['sim_cpu']:.1f} s, "
        f"database server {result.get('db_cpu', 0):.1f} s; "
        f"machine load average at the end {result['load']:.1f} (2 cores)"
    )
    verdict = "ok" if result["peak_rss_mb"] <= TARGET_RSS_MB else "OVER"
    print(
        f"peak RSS             sync process {result['peak_rss_mb']:.0f} MB (after migrate, before the sync: "
        f"{result['rss_before_sync_mb']:.0f} MB) [target <= {TARGET_RSS_MB} MB: {verdict}]; "
        f"simulator {result['sim_rss_mb']:.0f} MB"
    )
    verdict = "ok" if lists_per_500 <= TARGET_PER_500 else "OVER (bursts cost more)" if details else "OVER"
    print(
        f"requests to Kaltura  {requests} ({per_500:.2f} per 500 entries); list requests {lists} "
        f"({lists_per_500:.2f} per 500) [target <= {TARGET_PER_500} without bursts: {verdict}]; "
        f"{result['blocked']} blocked"
    )
    print(f"                     {', '.join(f'{name} {count}' for name, count in sorted(counters.items()))}")
    print(f"                     {result['cost_summary'] or 'no crowded seconds, counts agreed'}; details {details}")
    if result["incremental_seconds"] is not None:
        print(
            f"incremental sync     {result['incremental_seconds']:.2f} s, {result['incremental_requests']} requests, "
            f"{result['incremental_seen']} entries seen"
        )
    return exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--bursts", type=int, nargs="*", default=[], help="extra bulk uploads of these sizes")
    parser.add_argument("--runs", type=int, default=1, help="full syncs per database, each into a fresh one")
    parser.add_argument("--no-incremental", action="store_true", help="skip the incremental sync after each")
    parser.add_argument("--pg-name", default=PG_NAME, help="the PostgreSQL database to build (dropped first)")
    parser.add_argument("--simulator", help="the URL of a simulator already started with this script's arguments")
    parser.add_argument("--simulator-pid", type=int, help="with --simulator: its process id (for its CPU time)")
    parser.add_argument("--print-simulator-command", action="store_true", help="print it and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--sim-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.sim_url, args.sim_pid, not args.no_incremental, args.pg_name)
        return 0

    if args.print_simulator_command:
        print(" ".join(simulator_command(args.entries, args.bursts, 0)))
        return 0
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if args.simulator:
        # Generating a million entries takes the simulator 8-13 minutes: it can be started beforehand (with
        # simulator_command's arguments), outside the bench lock, and only the syncs measured under it.
        url, health = args.simulator.rstrip("/"), sim_json(args.simulator.rstrip("/"), "/sim/health")
        if health["entries"] < args.entries or not args.simulator_pid:
            raise SystemExit(f"--simulator: {health['entries']} entries there, --entries {args.entries}; and a pid")
        simulator = None
        print(f"simulator: {health['entries']} entries at {url}, started beforehand", flush=True)
    else:
        simulator, url = start_simulator(args.entries, args.bursts)
    sim_pid = simulator.pid if simulator else args.simulator_pid
    failed = False
    try:
        for kind in databases:
            exact_runs = 0
            for number in range(1, args.runs + 1):
                command = [sys.executable, __file__, "--child", kind, "--sim-url", url, "--sim-pid", str(sim_pid)]
                command += ["--pg-name", args.pg_name]
                if args.no_incremental:
                    command.append("--no-incremental")
                child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)]
                if args.runs > 1:
                    print(f"\n-- run {number} of {args.runs}")
                if child.returncode or not lines:
                    print(f"\n== {kind}: FAILED\n{child.stdout}{child.stderr}")
                    failed = True
                else:
                    exact_runs += report(json.loads(lines[-1][len(RESULT_MARK) :]))
                if not args.keep or number < args.runs:
                    drop_database(kind, SQLITE_PATH, args.pg_name)
            print(f"\n{kind}: mirror exact in {exact_runs} of {args.runs} run(s)")
            failed |= exact_runs < args.runs
    finally:
        if simulator:
            simulator.send_signal(signal.SIGTERM)
            try:
                simulator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                simulator.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
