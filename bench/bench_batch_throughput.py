"""Archive-and-replace throughput of one batch: the simulator, moto, Redis and N real `rqworker` processes.

    flock /work/wt/notes/bench.lock .venv/bin/python bench/bench_batch_throughput.py \
        [--entries 1000] [--workers 1 2 4] [--latency-ms 80] [--conversion-delay 60] \
        [--download-bytes-per-second 25000000] [--original-bytes 0] [--db postgres|sqlite]

The issue's targets: <= 10 Kaltura requests and <= 6 S3 requests per entry; 4 workers >= 3.4x and 2 workers
>= 1.8x the entries per minute of one; 1,000 small entries with a 60 s conversion on 4 workers in <= 15 min.

The world is tests/archive/test_crash_safety.World (simulator and moto as subprocesses, `manage.py` commands, real
`rqworker --with-scheduler` processes), with the simulator behaving like a remote Kaltura (latency per request,
a download speed cap per connection, a conversion delay). Per N it starts afresh, queues an archive-and-replace
batch of `--entries` entries (`archive_entries --replace --execute --no-wait`), starts N workers and times
them until every item has ended. Kaltura requests are the simulator's own counters (an HTTP request each; a
multirequest counts once, its calls are shown beside it); S3 requests go through a counting proxy in front
of moto. Counters are reset once the batch is queued, so the preview's bulk reads are not in the figures.
Working time is RQ's own total per worker (its jobs' run times); idle is the rest of N x the wall time.
Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchdb import drop_database, prepare_database  # noqa: E402
from tests.archive.test_crash_safety import World, _descendants  # noqa: E402

UNFINISHED = ("pending", "queued", "running", "waiting")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- S3 requests, counted by operation ----------------------------------------------------------


def s3_operation(method: str, path: str, query: str) -> str:
    """The S3 API operation of one request (path-style addressing, as boto3 uses with an endpoint URL)."""
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    on_object = path.strip("/").count("/") >= 1
    if "tagging" in params:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(method, f"{method} tagging")
    if "uploads" in params:
        return "CreateMultipartUpload"
    if "uploadId" in params:
        if method == "PUT":
            return "UploadPart"
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
    if "restore" in params:
        return "RestoreObject"
    if "attributes" in params:
        return "GetObjectAttributes"
    if not on_object:
        return {"GET": "ListObjects", "HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(method, f"{method} bucket")
    return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(method, method)


class CountingProxy:
    """A pass-through HTTP proxy in front of moto that counts each request by S3 operation."""

    def __init__(self, target_url: str) -> None:
        target = urllib.parse.urlsplit(target_url)
        self.counts: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                with lock:
                    proxy.counts[s3_operation(self.command, parts.path, parts.query)] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "transfer-encoding")}
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    body = self._read_chunked()
                    headers["Content-Length"] = str(len(body))
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(name, value)
                    # A HEAD answer's Content-Length is the object's size, not that of its (empty) body.
                    length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            def _read_chunked(self) -> bytes:
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.counts.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the workers' processes: peak RSS and CPU ---------------------------------------------------


class ProcessWatch:
    """Samples the workers and their children (scheduler, work-horses): peak RSS of any one, CPU in all."""

    def __init__(self, workers) -> None:
        self.workers = workers
        self.peak_kib = 0
        self.cpu_seen: dict[int, float] = {}  # live descendants' own CPU, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for worker in self.workers:
                for pid in [worker.pid, *_descendants(worker.pid)]:
                    with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
                        status = Path(f"/proc/{pid}/status").read_text()
                        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
                        self.peak_kib = max(self.peak_kib, int(hwm.split()[1]))
            self._stop.wait(0.2)

    def cpu_seconds(self) -> float:
        """The workers' CPU, their reaped children's included, and that of their live children."""
        total = 0.0
        for worker in self.workers:
            fields = _stat(worker.pid)
            total += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
            for pid in _descendants(worker.pid):
                with contextlib.suppress(OSError):
                    total += sum(int(f) for f in _stat(pid)[11:13]) / CLOCK_TICKS
        return total

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (a PostgreSQL backend each)."""
    total = 0.0
    with contextlib.suppress(OSError):
        total += sum(int(f) for f in _stat(pid)[11:15]) / CLOCK_TICKS
    for child in _descendants(pid):
        with contextlib.suppress(OSError):
            total += sum(int(f) for f in _stat(child)[11:13]) / CLOCK_TICKS
    return total


def server_pid(name: str) -> int | None:
    """The oldest process of that command name whose parent is not one (postgres' postmaster, redis-server)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm == name:
                found[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    roots = [pid for pid, parent in found.items() if parent not in found]
    return min(roots) if roots else None


def services_cpu(world) -> dict[str, float]:
    """CPU seconds so far of the services the workers call: the simulator, moto, PostgreSQL and Redis."""
    pids = {"simulator": world.processes[0].pid, "moto": world.moto.process.pid}
    for name, comm in (("postgresql", "postgres"), ("redis", "redis-server")):
        pid = server_pid(comm)
        if pid is not None:
            pids[name] = pid
    return {name: tree_cpu(pid) for name, pid in pids.items()}


# --- one run ------------------------------------------------------------------------------------


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10).close()


def item_statuses(database_url: str, world: World) -> dict[str, tuple[str, int]]:
    sql = "SELECT status, count(*), sum(bytes_copied) FROM archive_app_batchitem GROUP BY status"
    if database_url.startswith("sqlite"):
        rows = world.query(sql)
    else:
        import psycopg

        with psycopg.connect(database_url) as connection:
            rows = connection.execute(sql).fetchall()
    return {status: (n, int(copied or 0)) for status, n, copied in rows}


def _messages(database_url: str, world: World) -> list:
    sql = "SELECT status, message FROM archive_app_batchitem WHERE status NOT IN ('done', 'skipped') LIMIT 5"
    if database_url.startswith("sqlite"):
        return world.query(sql)
    import psycopg

    with psycopg.connect(database_url) as connection:
        return [(status, message[:300]) for status, message in connection.execute(sql).fetchall()]


def job_seconds(redis_url: str) -> tuple[float, int]:
    """Seconds the workers spent running jobs, and how many jobs they ran: RQ's own count per worker (a job's
    hash may be gone by the end, after its result_ttl)."""
    import redis
    from rq import Worker

    workers = Worker.all(connection=redis.Redis.from_url(redis_url))
    return (
        sum(worker.total_working_time for worker in workers),
        sum(worker.successful_job_count + worker.failed_job_count for worker in workers),
    )


def run_once(args, workers: int, tmp: Path) -> dict:
    world_dir = tmp / f"n{workers}"
    world_dir.mkdir()
    sim_options = (
        "--entries",
        str(
            20 if args.original_bytes else args.entries + args.entries // 4 + 20
        ),  # some generated entries never qualify (quiz, external...)
        "--content-scale",
        str(args.content_scale),
        "--conversion-delay",
        str(args.conversion_delay),
        "--latency-ms",
        str(args.latency_ms),
        "--no-archive-tags",
        "--stable-ties",
    )
    if args.download_bytes_per_second:
        sim_options += ("--download-bytes-per-second", str(args.download_bytes_per_second))
    world = World(world_dir, sim_options=sim_options, redis_url=args.redis_url)
    proxy = None
    database_url = ""
    try:
        world.start()
        proxy = CountingProxy(world.moto.url)
        database_url = prepare_database(args.db, world.db_path, args.pg_name)
        world.env.update(
            {
                "AWS_ENDPOINT_URL": proxy.url,
                "DATABASE_URL": database_url,
                # Workers fill the logs otherwise; the bench reads the figures, not the log.
                "LOG_LEVEL": "WARNING",
                # The settings' defaults, where the crash-safety test's world sets its own.
                "ARCHIVE_REPLACEMENT_WAIT_SECONDS": "0",
                **dict(pair.split("=", 1) for pair in args.env),
            }
        )
        world.manage("migrate", "--no-input", timeout=300)
        if args.original_bytes:
            # Entries of one exact size (the 200 MB run): added to the simulator before the sync.
            for number in range(args.entries):
                fields = {"name": f"Big lecture {number}", "tags": "bench_big", "createdAt": 1_500_000_000}
                body = json.dumps({**fields, "original_size_bytes": args.original_bytes})
                request = urllib.request.Request(
                    f"{world.sim_url}/sim/entries", data=body.encode(), method="POST", headers={}
                )
                urllib.request.urlopen(request, timeout=30).close()
        world.manage("sync_kaltura", "--full", "--no-progress", timeout=600)
        world.manage("create_user", "bench", "--role", "admin")
        selection = ["--state", "initial", "--max-entries", str(args.entries)]
        if args.original_bytes:
            selection += ["--tag", "bench_big"]
        queued_out = world.manage(
            "archive_entries", "--replace", *selection, "--execute", "--no-wait", "--user", "bench", timeout=900
        )
        statuses = item_statuses(database_url, world)
        queued = statuses.get("queued", (0, 0))[0]
        if not queued:
            raise SystemExit(f"nothing was queued:\n{queued_out}")
        _post(f"{world.sim_url}/sim/counters/reset")
        proxy.reset()

        started = time.monotonic()
        services_before = services_cpu(world)
        for _ in range(workers):
            world.start_worker(*(["--worker-class", args.worker_class] if args.worker_class else []))
        watch = ProcessWatch(world.workers)
        last_report = started
        while True:
            statuses = item_statuses(database_url, world)
            if not any(statuses.get(s, (0, 0))[0] for s in UNFINISHED):
                break
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                print(f"  N={workers}: {time.monotonic() - started:.0f} s, {statuses}", flush=True)
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"N={workers}: not finished after {args.timeout} s: {statuses}")
            time.sleep(0.5)
        wall = time.monotonic() - started
        cpu = watch.cpu_seconds()
        watch.stop()
        services = {name: seconds - services_before.get(name, 0.0) for name, seconds in services_cpu(world).items()}
        counters = _get_json(f"{world.sim_url}/sim/counters")
        working, jobs = job_seconds(world.redis_url)
        done = statuses.get("done", (0, 0))[0]
        if done < queued:
            print(f"  not done: {_messages(database_url, world)}", flush=True)
        return {
            "workers": workers,
            "queued": queued,
            "statuses": {s: n for s, (n, _) in statuses.items()},
            "done": done,
            "bytes": sum(copied for _, copied in statuses.values()),
            "wall": wall,
            "kaltura": counters["counters"],
            "kaltura_calls": counters["subrequestCounters"],
            "s3": dict(proxy.counts),
            "peak_rss_mib": watch.peak_kib / 1024,
            "cpu": cpu,
            "services_cpu": services,
            "working": working,
            "jobs": jobs,
        }
    finally:
        world.stop()
        if proxy is not None:
            proxy.stop()
        if database_url:
            with contextlib.suppress(Exception):
                drop_database(args.db, world.db_path, args.pg_name)


def per_entry(counts: dict[str, int], entries: int) -> str:
    shown = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {n / entries:.2f}" for name, n in shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency-ms", type=float, default=80)
    parser.add_argument("--conversion-delay", type=float, default=60)
    parser.add_argument("--download-bytes-per-second", type=int, default=25_000_000)
    parser.add_argument("--content-scale", type=float, default=0.0002, help="small entries: 1 KiB to 1.2 MB")
    parser.add_argument("--original-bytes", type=int, default=0, help="entries of this exact size instead")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-name", default="ka_bench_throughput")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--worker-class", default="", help="rqworker --worker-class (default: RQ's, a fork a job)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers (settings)")
    args = parser.parse_args()

    print(
        f"{args.entries} entries, latency {args.latency_ms:.0f} ms, conversion {args.conversion_delay:.0f} s, "
        f"download cap {args.download_bytes_per_second / 1e6:.0f} MB/s per connection, database {args.db}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for workers in args.workers:
            result = run_once(args, workers, Path(tmp))
            results.append(result)
            base = max(results[0]["done"], 1) / results[0]["wall"]
            rate = result["done"] / result["wall"]
            done = max(result["done"], 1)
            idle = workers * result["wall"] - result["working"]
            kaltura_total = sum(result["kaltura"].values())
            s3_total = sum(result["s3"].values())
            print(
                f"N={workers}: {result['done']} of {result['queued']} done in {result['wall']:.1f} s "
                f"({result['statuses']}); {rate * 60:.1f} entries/min, {rate * 60 / (base * 60):.2f}x N=1; "
                f"{result['bytes'] / result['wall'] / 1e6:.2f} MB/s copied\n"
                f"  Kaltura requests per entry: {kaltura_total / done:.2f} ({per_entry(result['kaltura'], done)})\n"
                f"  Kaltura calls inside multirequests per entry: {per_entry(result['kaltura_calls'], done)}\n"
                f"  S3 requests per entry: {s3_total / done:.2f} ({per_entry(result['s3'], done)})\n"
                f"  worker peak RSS {result['peak_rss_mib']:.0f} MiB (largest process); "
                f"CPU {result['cpu'] / done:.3f} s per entry ({result['cpu']:.1f} s in all); services' CPU per "
                f"entry: {', '.join(f'{k} {v / done:.3f} s' for k, v in result['services_cpu'].items())}\n"
                f"  workers' time: working {result['working']:.1f} s in {result['jobs']} jobs, "
                f"idle-waiting {idle:.1f} s ({result['working'] / (workers * result['wall']):.0%} busy); "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
