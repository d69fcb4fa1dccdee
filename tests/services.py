"""Starting the real services the tests talk to: Redis and moto's S3 server."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import redis

# Default to a database number of its own so tests never touch a demo's queues.
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis() -> str:
    """REDIS_URL if Redis answers there; else a private redis-server; else stop with advice."""
    url = os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS_URL
    if redis_answers(url):
        return url
    binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit(
            f"Redis does not answer at {url} and redis-server is not installed.\n"
            "Install it (sudo apt-get install redis-server) or set REDIS_URL to a running Redis."
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="test-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    atexit.register(process.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"a private redis-server on port {port} did not start")
        time.sleep(0.05)
    return url


class MotoServer:
    """moto's standalone S3 server in a subprocess, as the demo runs it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)

    def reset(self) -> None:
        """Empty every bucket, and let restores complete at once again (a reset keeps transitions)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10)
        unset = urllib.request.Request(
            f"{self.url}/moto-api/state-manager/unset-transition",
            data=json.dumps({"model_name": "s3::keyrestore"}).encode(),
            method="POST",
        )
        urllib.request.urlopen(unset, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
