"""Full and incremental sync against the Kaltura simulator, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_sync.py [--entries 100000] [--database sqlite|postgres|both] [--keep]

Starts the simulator as its own process (`python -m kaltura_sim`, so it has its own core, as
Kaltura would), waits for GET /sim/health, then for each database runs a child process that
builds a fresh database (the SQLite file /tmp/kaltura_archive_bench_sync.sqlite3, or the
PostgreSQL database kaltura_archive_bench_sync on 127.0.0.1 as user postgres; named apart from
bench_browse.py's so the two benchmarks never drop each other's database), migrates it, resets
the simulator's counters, times sync_full and then a sync_incremental, and reads the request
counts back from GET /sim/counters (a multirequest counts once).

Target (the issue): at most 3 HTTP requests per 500 entries, and 100,000 entries in under 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
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
TARGET_SECONDS = 120
TARGET_PER_500 = 3
RESULT_MARK = "RESULT "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sim_json(url: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{url}{path}", method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def start_simulator(entries: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "kaltura_sim", "--port", str(port), "--entries", str(entries),
               "--seed", "1", "--content-scale", "0.0001", "--admin-secret", SECRET]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
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


def run_child(kind: str, url: str, sim_pid: int) -> None:
    """In its own process: Django's settings are fixed once set up, and each database needs its own."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="kaltura_archive.settings",
        DJANGO_SECRET_KEY="bench",
        DATABASE_URL=prepare_database(kind, SQLITE_PATH, PG_NAME),
        KALTURA_SERVICE_URL=url,
        KALTURA_PARTNERID=str(PARTNER_ID),
        KALTURA_SECRET=SECRET,
        KALTURA_USERID="bench",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from archive_app import sync
    from archive_app.kaltura import Kaltura
    from archive_app.models import Entry, Flavor

    call_command("migrate", verbosity=0)
    simulated = sim_json(url, "/sim/health")["entries"]

    sim_json(url, "/sim/counters/reset", "POST")
    started, cpu_started, sim_cpu_started = time.perf_counter(), time.process_time(), cpu_seconds(sim_pid)
    run = sync.sync_full(Kaltura.from_settings())
    full_seconds = time.perf_counter() - started
    full_cpu, sim_cpu = time.process_time() - cpu_started, cpu_seconds(sim_pid) - sim_cpu_started
    full_requests, full_counters = requests_made(url)

    sim_json(url, "/sim/counters/reset", "POST")
    started = time.perf_counter()
    incremental = sync.sync_incremental(Kaltura.from_settings())
    incremental_seconds = time.perf_counter() - started
    incremental_requests, _ = requests_made(url)

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
        "load": os.getloadavg()[0],
        "full_requests": full_requests,
        "full_counters": full_counters,
        "incremental_seen": incremental.seen,
        "incremental_seconds": incremental_seconds,
        "incremental_requests": incremental_requests,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def report(result: dict) -> None:
    mirrored, seconds, requests = result["mirrored"], result["full_seconds"], result["full_requests"]
    per_500 = requests / (mirrored / 500) if mirrored else float("nan")
    counters = ", ".join(f"{name} {count}" for name, count in sorted(result["full_counters"].items()))
    print(f"\n== {result['database']}")
    print(f"entries mirrored     {mirrored:,} of {result['simulated']:,} simulated "
          f"({result['live_mirrored']:,} live, {result['flavors']:,} flavors), run {result['status']}")  # fmt: skip
    verdict = "ok" if seconds < TARGET_SECONDS else "OVER"
    rate = mirrored / seconds
    print(f"full sync            {seconds:.1f} s, {rate:,.0f} entries/s  [target < {TARGET_SECONDS} s: {verdict}]")
    print(f"                     CPU: sync process {result['full_cpu']:.1f} s, simulator {result['sim_cpu']:.1f} s; "
          f"machine load average at the end {result['load']:.1f} (2 cores)")  # fmt: skip
    verdict = "ok" if per_500 <= TARGET_PER_500 else "OVER"
    print(f"requests to Kaltura  {requests} ({per_500:.2f} per 500 entries)  [target <= {TARGET_PER_500}: {verdict}]")
    print(f"                     {counters}")
    print(f"incremental sync     {result['incremental_seconds']:.2f} s, {result['incremental_requests']} requests, "
          f"{result['incremental_seen']} entries seen")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--sim-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.sim_url, args.sim_pid)
        return 0

    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    simulator, url = start_simulator(args.entries)
    failed = False
    try:
        for kind in databases:
            command = [sys.executable, __file__, "--child", kind, "--sim-url", url, "--sim-pid", str(simulator.pid)]
            child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)]
            if child.returncode or not lines:
                print(f"\n== {kind}: FAILED\n{child.stdout}{child.stderr}")
                failed = True
            else:
                report(json.loads(lines[-1][len(RESULT_MARK) :]))
            if not args.keep:
                drop_database(kind, SQLITE_PATH, PG_NAME)
    finally:
        simulator.send_signal(signal.SIGTERM)
        try:
            simulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            simulator.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
