"""Streaming archive of one big original: the Kaltura simulator -> moto's S3, our path against a plain copy.

    .venv/bin/python bench/bench_archive_stream.py [--size-gib 2] [--part-mib 8] [--concurrency 4] [--runs 1]

Target (the issue): throughput of ArchiveStore.upload_stream at least 0.7x a plain streaming copy of the same
bytes between the same two servers in the same run; worker peak RSS under 200 MB; no temporary file of the
whole video. It starts moto's server and the simulator as subprocesses, adds one entry whose original has
exactly the asked size, and runs each copy in a CHILD process, so that its peak RSS is its own (os.wait4):
  plain    requests.get(stream=True) of the flavor URL -> boto3 upload_fileobj, default TransferConfig, no hashing
  archive  the same GET -> ArchiveStore.upload_stream (SHA-256 and CRC32 on the stream, tags, checks)
While a child runs, the parent watches its open files (/proc/PID/fd, which also sees unlinked temporary files)
and its TMPDIR for any file over 100 MB. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
BIG_FILE = 100 * 1000 * 1000
BUCKET = "kaltura-archive-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start (exit code {process.poll()})") from None
            time.sleep(0.1)


def http_json(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# --- the source of bytes ---------------------------------------------------------------------------------------


def start_simulator(size: int, workdir: Path, procs: list) -> tuple[str, str, str | None, str]:
    """The flavor URL, entry id, expected SHA-256 (or None) and a description of the source."""
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "kaltura_sim", "--port", str(port), "--entries", "10"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "sim.log").open("w"),
        env={**os.environ, "TMPDIR": str(workdir / "sim-tmp")},
    )
    procs.append(sim)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/sim/health", sim, "the Kaltura simulator", timeout=30)
        entry_id = http_json(f"{base}/sim/entries", {"original_size_bytes": size})["id"]
        flavors = http_json(f"{base}/sim/entries/{entry_id}/flavors")
        original = next(f for f in flavors if f["isOriginal"])
        pid = original["partnerId"]
        url = (
            f"{base}/p/{pid}/sp/{pid}00/serveFlavor/entryId/{entry_id}/v/{original['version']}"
            f"/flavorId/{original['id']}/name/a.{original['fileExt']}"
        )
        sha256 = http_json(f"{base}/sim/entries/{entry_id}/original-sha256")["sha256"]
        return url, entry_id, sha256, f"kaltura_sim (entry {entry_id}, flavor {original['id']})"
    except (OSError, KeyError, StopIteration, SystemExit) as exc:
        sim.terminate()
        print(f"! the simulator is not usable ({exc!r}); using a plain HTTP byte server instead", flush=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-bytes", str(port), "--size", str(size)], stdout=subprocess.DEVNULL
    )
    procs.append(server)
    wait_for(f"http://127.0.0.1:{port}/health", server, "the byte server", timeout=30)
    return f"http://127.0.0.1:{port}/bytes", "0_benchmark", None, "a stand-in HTTP server (deterministic bytes)"


def serve_bytes(port: int, size: int) -> None:
    """The stand-in source: `size` deterministic bytes at /bytes, in 1 MiB writes."""
    block = bytearray(os.urandom(MiB))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            length = size if self.path == "/bytes" else 2
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.path != "/bytes":
                self.wfile.write(b"ok")
                return
            sent = 0
            while sent < size:
                block[:8] = (sent // MiB).to_bytes(8, "big")
                piece = memoryview(block)[: min(MiB, size - sent)]
                self.wfile.write(piece)
                sent += len(piece)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# --- the two copies, each in a child process ------------------------------------------------------------------


def child(mode: str, url: str, key: str, size: int, part_mib: int, concurrency: int) -> None:
    import requests

    if mode == "plain":
        import boto3

        s3 = boto3.client("s3")  # endpoint and credentials from the AWS_* environment

        def copy(body):
            s3.upload_fileobj(body, os.environ["AWS_BUCKET"], key)
            return {}
    else:
        import django

        django.setup()
        from archive_app.lib.storage import ArchiveStore

        store = ArchiveStore.from_settings()
        store.client  # noqa: B018 - build the client before the clock starts, as boto3.client above

        def copy(body):
            archived = store.upload_stream(
                key,
                body,
                flavor_id="bench",
                expected_size=size,
                part_size=part_mib * MiB,
                concurrency=concurrency,
            )
            return {"sha256": archived.sha256, "storage_class": archived.storage_class, "crc32": archived.crc32}

    # Time spent waiting for CompleteMultipartUpload: moto assembles the object then, in Python (see README).
    client = s3 if mode == "plain" else store.client
    completing = {"started": 0.0, "seconds": 0.0}

    def before_complete(**kwargs):
        completing["started"] = time.monotonic()

    def after_complete(**kwargs):
        completing["seconds"] += time.monotonic() - completing["started"]

    client.meta.events.register("before-call.s3.CompleteMultipartUpload", before_complete)
    client.meta.events.register("after-call.s3.CompleteMultipartUpload", after_complete)

    started = time.monotonic()
    with requests.get(url, stream=True, timeout=(10, 300)) as response:
        response.raise_for_status()
        result = copy(response.raw)
        received = response.raw.tell()
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    figures = {"seconds": seconds, "complete_seconds": completing["seconds"], "bytes": received, "peak_rss": peak}
    print(json.dumps({**figures, **result}), flush=True)


class BigFileWatch:
    """Poll a child's open files and a directory for regular files over 100 MB."""

    def __init__(self, pid: int, directory: Path) -> None:
        self.pid, self.directory = pid, directory
        self.found: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            paths = []
            fd_dir = Path(f"/proc/{self.pid}/fd")
            with contextlib.suppress(OSError):
                paths += [(f"fd {fd.name} -> {os.readlink(fd)}", fd) for fd in fd_dir.iterdir()]
            for folder, _, files in os.walk(self.directory):
                paths += [(os.path.join(folder, name), Path(folder, name)) for name in files]
            for label, path in paths:
                try:
                    info = path.stat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_size > BIG_FILE:
                    self.found[label] = max(info.st_size, self.found.get(label, 0))

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.found


def run_child(mode: str, args: argparse.Namespace, url: str, key: str, env: dict, workdir: Path) -> dict:
    child_tmp = workdir / f"{mode}-tmp"
    child_tmp.mkdir(exist_ok=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--url",
        url,
        "--key",
        key,
        "--size",
        str(args.size),
        "--part-mib",
        str(args.part_mib),
        "--concurrency",
        str(args.concurrency),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env={**env, "TMPDIR": str(child_tmp)}, stdout=subprocess.PIPE)
    watch = BigFileWatch(process.pid, child_tmp)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    big_files = watch.stop()
    if process.returncode != 0:
        raise SystemExit(f"the {mode} child failed (exit code {process.returncode})")
    result = json.loads(output.decode().strip().splitlines()[-1])
    result["peak_rss_wait4"] = usage.ru_maxrss * 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["big_files"] = big_files
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0, help="size of the original (default 2)")
    parser.add_argument("--part-mib", type=int, default=8, help="ArchiveStore part size (default 8)")
    parser.add_argument("--concurrency", type=int, default=4, help="ArchiveStore parts in flight (default 4)")
    parser.add_argument("--runs", type=int, default=1, help="pairs of copies, alternating the order (default 1)")
    parser.add_argument("--child", choices=["plain", "archive"], help=argparse.SUPPRESS)
    parser.add_argument("--serve-bytes", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bytes:
        serve_bytes(args.serve_bytes, args.size)
        return 0
    if args.child:
        child(args.child, args.url, args.key, args.size, args.part_mib, args.concurrency)
        return 0

    args.size = int(args.size_gib * 1024 * MiB)
    workdir = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    procs: list[subprocess.Popen] = []
    try:
        return bench(args, workdir, procs)
    finally:
        for process in procs:
            process.send_signal(signal.SIGTERM)
        for process in procs:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def bench(args: argparse.Namespace, workdir: Path, procs: list) -> int:
    (workdir / "moto-tmp").mkdir()
    (workdir / "sim-tmp").mkdir()
    moto_port = free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    # moto keeps objects in SpooledTemporaryFiles: give it a TMPDIR of its own, apart from the workers'.
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(workdir / "moto-tmp")},
    )
    procs.append(moto)
    wait_for(f"{moto_url}/moto-api/", moto, "moto's server")
    url, entry_id, expected_sha256, source = start_simulator(args.size, workdir, procs)

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaltura_archive.settings",
        "DJANGO_SECRET_KEY": "bench",
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_BUCKET": BUCKET,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    s3.create_bucket(Bucket=BUCKET)

    size = args.size
    print(f"source: {source}; {size:,} bytes ({size / 1024**3:.2f} GiB)")
    print(
        f"moto: {moto_url}; archive: part {args.part_mib} MiB, concurrency {args.concurrency}; "
        f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results: dict[str, list[dict]] = {"plain": [], "archive": []}
    for run in range(args.runs):
        order = ["plain", "archive"] if run % 2 == 0 else ["archive", "plain"]
        for mode in order:
            key = f"{mode}-{run}-{entry_id}"
            result = run_child(mode, args, url, key, env, workdir)
            head = s3.head_object(Bucket=BUCKET, Key=key)
            result["stored"] = head["ContentLength"]
            s3.delete_object(Bucket=BUCKET, Key=key)  # moto would otherwise hold every copy
            results[mode].append(result)
            mbps = result["bytes"] / 1e6 / result["seconds"]
            print(
                f"  run {run + 1} {mode:8s} {result['bytes']:,} bytes read, {result['stored']:,} stored, "
                f"{result['seconds']:6.1f} s ({result['complete_seconds']:.1f} s of it in CompleteMultipartUpload), "
                f"{mbps:6.1f} MB/s, CPU {result['cpu_seconds']:.1f} s, "
                f"peak RSS {result['peak_rss_wait4'] / MiB:6.1f} MiB, "
                f"files > 100 MB: {result['big_files'] or 'none'}",
                flush=True,
            )
            if mode == "archive" and expected_sha256:
                same = "matches" if result["sha256"] == expected_sha256 else "DIFFERS FROM"
                print(f"           sha256 {result['sha256']} {same} the simulator's", flush=True)

    def best(mode: str, streaming_only: bool = False) -> float:
        return max(
            r["bytes"] / 1e6 / (r["seconds"] - (r["complete_seconds"] if streaming_only else 0)) for r in results[mode]
        )

    ratio = best("archive") / best("plain")
    streaming_ratio = best("archive", True) / best("plain", True)
    archive_rss = max(r["peak_rss_wait4"] for r in results["archive"])
    plain_rss = max(r["peak_rss_wait4"] for r in results["plain"])
    big = [f for mode in results for r in results[mode] for f in r["big_files"]]
    complete = all(r["bytes"] == size == r["stored"] for mode in results for r in results[mode])
    print()
    print(f"plain copy  : {best('plain'):7.1f} MB/s (best of {args.runs}), peak RSS {plain_rss / MiB:.1f} MiB")
    print(f"archive     : {best('archive'):7.1f} MB/s (best of {args.runs}), peak RSS {archive_rss / MiB:.1f} MiB")
    print(f"ratio       : {ratio:.2f}x   (target >= 0.70)        {'ok' if ratio >= 0.7 else 'MISSED'}")
    print(
        f"  without the time moto spends in CompleteMultipartUpload: plain {best('plain', True):.1f} MB/s, "
        f"archive {best('archive', True):.1f} MB/s, ratio {streaming_ratio:.2f}x (information only)"
    )
    print(f"worker RSS  : {archive_rss / 1e6:.0f} MB (target < 200 MB)   {'ok' if archive_rss < 200e6 else 'MISSED'}")
    print(f"temp files  : {big or 'none over 100 MB'}   {'ok' if not big else 'MISSED'}")
    print(f"all bytes   : {'every copy complete' if complete else 'INCOMPLETE COPY'}")
    if source.startswith("a stand-in"):
        print("note: the source was the stand-in byte server, not the Kaltura simulator")
    return 0 if ratio >= 0.7 and archive_rss < 200e6 and not big and complete else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
