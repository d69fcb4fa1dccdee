"""Crash safety: SIGKILL the worker at random points of archive-and-replace, then of the restores, rerun, check
the invariants.

The issue's acceptance test: "A test kills the worker (SIGKILL) at random points during archive-and-replace of
many entries and reruns: no entry ever carries the placeholder without a verified copy, and all converge."

A forking RQ worker cannot share pytest's in-memory test database, so everything runs out of process against a
SQLite file: the Kaltura simulator, moto's S3 server, Redis (a database number of its own), `manage.py` commands
and real `rqworker` processes. The test reads the results straight from the services and the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import redis

from tests.services import MotoServer, ensure_redis, free_port

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_SHA = hashlib.sha256((ROOT / "assets" / "placeholder.mp4").read_bytes()).hexdigest()
BUCKET = "kaltura-archive-crash-test"
ENTRIES = 12
KILLS = 8
UNFINISHED = ("pending", "queued", "running", "waiting")
# A SIGKILLed worker's job stays STARTED until its heartbeat expires (rq: 30 s monitoring interval + 60 s), then
# RQ's Retry (enqueue_item: 10 s first interval) queues it again; the scheduler lock of a killed worker expires
# after 61 s. So convergence takes about 100 s after the last kill.
CONVERGE_SECONDS = 170


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class World:
    """The services and the environment the product's processes run in."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.moto: MotoServer | None = None
        self.db_path = tmp_path / "db.sqlite3"
        redis_base, tests_db = ensure_redis().rsplit("/", 1)
        # The database next to the tests' own: two test runs side by side (CI) never share one.
        self.redis_url = f"{redis_base}/{int(tests_db) - 1 if int(tests_db) > 0 else 1}"
        redis.Redis.from_url(self.redis_url).flushdb()
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"

    def start(self) -> None:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kaltura_sim",
                "--port",
                str(self.sim_port),
                "--entries",
                "50",
                "--content-scale",
                "0.0002",
                "--conversion-delay",
                "0.3",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(sim)
        self.moto = MotoServer()
        deadline = time.monotonic() + 30
        while True:
            try:
                health = _get_json(f"{self.sim_url}/sim/health")
                break
            except OSError:
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.s3.create_bucket(Bucket=BUCKET)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "kaltura_archive.settings",
            "DJANGO_SECRET_KEY": "x",
            "DJANGO_DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "REDIS_URL": self.redis_url,
            "KALTURA_SERVICE_URL": self.sim_url,
            "KALTURA_PARTNERID": str(health["partnerId"]),
            "KALTURA_SECRET": "sim-admin-secret",
            "KALTURA_USERID": "crash-test",
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_BUCKET": BUCKET,
            # moto may refuse tag reads on GLACIER objects; the class does not matter to crash safety.
            "ARCHIVE_STORAGE_CLASS": "STANDARD",
            "ARCHIVE_MIN_AGE_DAYS": "0",
            "ARCHIVE_MIN_UNPLAYED_DAYS": "0",
            "ARCHIVE_REPLACEMENT_WAIT_SECONDS": "20",
            # The simulator's scaled-down videos free far less than the default 10 MB.
            "ARCHIVE_MIN_BYTES_FREED": "0",
            # Audio entries get the audio placeholder; here the same file, so one placeholder hash for all.
            "PLACEHOLDER_AUDIO": str(ROOT / "assets" / "placeholder.mp4"),
        }
        for name in ("PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER"):
            self.env.pop(name, None)

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def start_worker(self, *extra: str) -> subprocess.Popen:
        log = open(self.tmp / "worker.log", "a")  # noqa: SIM115 - closed with the process
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "default", "--with-scheduler", *extra],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(worker)
        self.workers.append(worker)
        return worker

    @staticmethod
    def kill_group(process: subprocess.Popen) -> None:
        """SIGKILL the worker, its scheduler and its work-horse, which rq puts in a process group of its own."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGSTOP)  # frozen: it cannot fork a new horse while we look
        groups = {process.pid} | {_pgid(pid) for pid in _descendants(process.pid)} - {None}
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        process.wait(timeout=10)

    def wait_until_listening(self, started_before: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (self.tmp / "worker.log").read_text().count("*** Listening on") <= started_before:
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                if process in self.workers:
                    self.kill_group(process)
                    continue
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self.moto is not None:
            self.moto.stop()
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.redis_url).flushdb()

    # --- reading the live state -----------------------------------------------------------

    def query(self, sql: str, *params):
        connection = sqlite3.connect(self.db_path, timeout=30)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def sim_entry(self, entry_id: str) -> dict:
        return _get_json(f"{self.sim_url}/sim/entries/{entry_id}")

    def sim_original_sha(self, entry_id: str) -> str | None:
        return _get_json(f"{self.sim_url}/sim/entries/{entry_id}/original-sha256")["sha256"]

    def s3_sha(self, key: str) -> tuple[int, str | None] | None:
        try:
            head = self.s3.head_object(Bucket=BUCKET, Key=key)
        except self.s3.exceptions.ClientError:
            return None
        tags = {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
        return head["ContentLength"], tags.get("sha256")

    def restore_statuses(self) -> dict[str, tuple[str, str]]:
        rows = self.query("SELECT entry_id, status, error FROM archive_app_restore")
        return {entry_id: (status, error) for entry_id, status, error in rows}

    def item_statuses(self, batch_id: int) -> dict[str, tuple[str, str]]:
        rows = self.query("SELECT entry_id, status, message FROM archive_app_batchitem WHERE batch_id = ?", batch_id)
        return {entry_id: (status, message) for entry_id, status, message in rows}


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def run_until_settled(world: World, batch_id: int, originals, deadline: float, interrupted) -> dict:
    """Burst workers (with the scheduler, for RQ's retries) until no item is queued, running or waiting."""
    while True:
        world.manage("rqworker", "default", "--burst", "--with-scheduler", timeout=150)
        check_no_placeholder_without_verified_copy(world, originals, "during the rerun")
        statuses = world.item_statuses(batch_id)
        unfinished = {e: s for e, s in statuses.items() if s[0] in UNFINISHED}
        print(f"rerun: {len(unfinished)} unfinished: {sorted(s for s, _ in unfinished.values())}")
        if not unfinished:
            return statuses
        assert time.monotonic() < deadline, (
            f"items never finished after {CONVERGE_SECONDS} s (interrupted: {interrupted}): {unfinished}"
        )
        time.sleep(3)


RESTORE_UNFINISHED = ("requested", "waiting", "uploading", "converting")


def run_restores_until_settled(world: World, originals, deadline: float, interrupted) -> dict:
    while True:
        world.manage("rqworker", "default", "--burst", "--with-scheduler", timeout=150)
        check_restores_write_only_over_the_placeholder(world, originals, "during the rerun")
        statuses = world.restore_statuses()
        unfinished = {e: s for e, s in statuses.items() if s[0] in RESTORE_UNFINISHED}
        print(f"restore rerun: {len(unfinished)} unfinished: {sorted(s for s, _ in unfinished.values())}")
        if not unfinished:
            return statuses
        assert time.monotonic() < deadline, (
            f"restores never finished after {CONVERGE_SECONDS} s (interrupted: {interrupted}): {unfinished}"
        )
        time.sleep(3)


def check_restores_write_only_over_the_placeholder(world: World, originals: dict[str, str], when: str) -> None:
    """Kaltura holds the placeholder or the original's exact bytes, nothing else; and the S3 copy stays."""
    check_no_placeholder_without_verified_copy(world, originals, when)
    for entry_id, original_sha in originals.items():
        current = world.sim_original_sha(entry_id)
        assert current in (PLACEHOLDER_SHA, original_sha), f"{when}: {entry_id} holds content of neither"
        (key,) = world.query("SELECT key FROM archive_app_archivecopy WHERE entry_id = ?", entry_id)[0]
        assert world.s3_sha(key)[1] == original_sha, f"{when}: {entry_id}'s S3 copy changed"


def tags_of(entry: dict) -> set[str]:
    return {t.strip().lower() for t in (entry.get("tags") or "").split(",") if t.strip()}


def check_no_placeholder_without_verified_copy(world: World, originals: dict[str, str], when: str) -> int:
    """The invariant, read from Kaltura, S3 and the database as they are now. Returns how many were replaced."""
    replaced = 0
    for entry_id, original_sha in originals.items():
        tags = tags_of(world.sim_entry(entry_id))
        current = world.sim_original_sha(entry_id)
        if "flavors_deleted" not in tags and current != PLACEHOLDER_SHA:
            assert current == original_sha, f"{when}: {entry_id}'s original is neither its bytes nor the placeholder"
            continue
        replaced += 1
        rows = world.query(
            "SELECT sha256, size_bytes, bucket, key FROM archive_app_archivecopy WHERE entry_id = ?", entry_id
        )
        assert rows, f"{when}: {entry_id} carries the placeholder (tags {sorted(tags)}) but no copy is recorded"
        sha256, size, bucket, key = rows[0]
        assert sha256 == original_sha, f"{when}: {entry_id}'s recorded copy has sha256 {sha256!r}"
        assert bucket == BUCKET
        in_s3 = world.s3_sha(key)
        assert in_s3 is not None, f"{when}: {entry_id} carries the placeholder but S3 has no {key}"
        assert in_s3 == (size, original_sha), f"{when}: {entry_id}: S3 holds {in_s3}, recorded {(size, sha256)}"
    return replaced


@pytest.mark.slow
def test_sigkilled_workers_never_leave_a_placeholder_without_a_verified_copy_and_a_rerun_converges(tmp_path):
    rng = random.Random(20261127)
    world = World(tmp_path)
    try:
        world.start()
        world.manage("migrate", "--no-input")
        world.manage("sync_kaltura", "--full", "--no-progress")
        world.manage("create_user", "crash-test", "--role", "admin")  # --user archives, then restores
        out = world.manage(
            "archive_entries",
            "--replace",
            "--state",
            "initial",
            "--max-entries",
            str(ENTRIES),
            "--execute",
            "--no-wait",
            "--user",
            "crash-test",
        )
        assert "entries queued" in out, out
        (batch_id,) = world.query("SELECT max(id) FROM archive_app_batch")[0]
        statuses = world.item_statuses(batch_id)
        assert len(statuses) == ENTRIES
        queued = [entry_id for entry_id, (status, _) in statuses.items() if status == "queued"]
        assert len(queued) >= ENTRIES - 2, statuses  # ARCHIVE_MIN_*_DAYS=0: nearly everything qualifies
        originals = {entry_id: world.sim_original_sha(entry_id) for entry_id in queued}
        for entry_id in queued:
            assert "flavors_deleted" not in tags_of(world.sim_entry(entry_id))
            assert originals[entry_id] not in (None, PLACEHOLDER_SHA)

        # Kill the worker at random points, checking the invariant after every kill.
        interrupted = []
        for kill in range(KILLS):
            worker = world.start_worker()
            world.wait_until_listening(kill)
            time.sleep(rng.uniform(0.3, 2.5))
            world.kill_group(worker)
            running = [e for e, (status, _) in world.item_statuses(batch_id).items() if status == "running"]
            interrupted.append(running)
            replaced = check_no_placeholder_without_verified_copy(world, originals, f"after kill {kill + 1}")
            print(f"kill {kill + 1}: running {running}, {replaced} entries carry the placeholder")
        # The test is only worth something if the kills landed in the middle of work.
        assert any(interrupted), "no kill interrupted a job; the worker never got going"

        # Rerun: the product's own recovery. A killed job stays STARTED in RQ until its heartbeat expires, then
        # RQ's Retry (enqueue_item) queues it again with the same claim token, which lets it take the item back.
        deadline = time.monotonic() + CONVERGE_SECONDS
        statuses = run_until_settled(world, batch_id, originals, deadline, interrupted)
        failed = {e: message for e, (status, message) in statuses.items() if status == "failed"}
        if failed:
            # What a librarian does next: the batch page's "retry failed" button.
            print(f"retrying failed items: {failed}")
            world.manage(
                "shell",
                "-c",
                "from django.contrib.auth.models import User; from archive_app.archive import batches; "
                "from archive_app.models import Batch; "
                f"batches.batch_retry_failed(Batch.objects.get(pk={batch_id}), "
                "user=User.objects.get(username='crash-test'))",
            )
            statuses = run_until_settled(world, batch_id, originals, deadline, interrupted)

        # Converged: every item done, every entry archived and replaced with its original's bytes in S3.
        for entry_id, (status, message) in statuses.items():
            assert status == "done" or (status == "skipped" and message), (entry_id, status, message[:500])
        assert all(statuses[entry_id][0] == "done" for entry_id in queued), statuses
        assert check_no_placeholder_without_verified_copy(world, originals, "at the end") == len(queued)
        for entry_id, original_sha in originals.items():
            entry = world.sim_entry(entry_id)
            assert {"archived_to_s3", "flavors_deleted"} <= tags_of(entry), (entry_id, entry["tags"])
            assert int(entry["status"]) == 2
            assert world.sim_original_sha(entry_id) == PLACEHOLDER_SHA
            (key,) = world.query("SELECT key FROM archive_app_archivecopy WHERE entry_id = ?", entry_id)[0]
            assert world.s3_sha(key)[1] == original_sha
        assert world.query("SELECT status FROM archive_app_batch WHERE id = ?", batch_id) == [("done",)]

        # Restores of all of them, the workers killed the same way: Kaltura only ever holds the placeholder or
        # the original, and every restore ends restored.
        out = world.manage(
            "restore_entries",
            *[f"--id={e}" for e in queued],
            "--tier",
            "Bulk",
            "--execute",
            "--no-wait",
            "--user",
            "crash-test",
        )
        assert len(world.restore_statuses()) == len(queued), out
        restore_interrupted = []
        for kill in range(KILLS // 2):
            worker = world.start_worker()
            world.wait_until_listening(KILLS + kill)
            time.sleep(rng.uniform(0.3, 2.5))
            world.kill_group(worker)
            active = [e for e, (status, _) in world.restore_statuses().items() if status in RESTORE_UNFINISHED]
            restore_interrupted.append(active)
            check_restores_write_only_over_the_placeholder(world, originals, f"after restore kill {kill + 1}")
        deadline = time.monotonic() + CONVERGE_SECONDS
        restored = run_restores_until_settled(world, originals, deadline, restore_interrupted)
        failed = [e for e, (status, _) in restored.items() if status in ("failed", "errored")]
        if failed:
            print(f"retrying failed restores: {restored}")
            world.manage(
                "shell",
                "-c",
                "from archive_app.archive import restores; from archive_app.models import Restore; "
                "[restores.restore_retry(r, user=None) for r in Restore.objects.filter(status__in=Restore.RETRYABLE)]",
            )
            restored = run_restores_until_settled(world, originals, deadline, restore_interrupted)
        assert {status for status, _ in restored.values()} == {"done"}, restored
        for entry_id, original_sha in originals.items():
            entry = world.sim_entry(entry_id)
            assert world.sim_original_sha(entry_id) == original_sha
            assert "flavors_deleted" not in tags_of(entry) and "archived_to_s3" in tags_of(entry)
        assert world.query("SELECT count(*) FROM archive_app_entrylock") == [(0,)]
    finally:
        world.stop()


# --- one crash point, deterministic --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_killed_after_the_upload_but_before_the_copy_is_recorded_converges_on_rerun(
    kaltura_sim, s3, rq_queue, settings, make_user
):
    from datetime import UTC, datetime, timedelta

    from archive_app.archive import batches, runner
    from archive_app.lib.kaltura import Kaltura
    from archive_app.lib.storage import ArchiveStore
    from archive_app.mirror import sync
    from archive_app.models import ArchiveCopy, Batch, BatchItem

    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = kaltura_sim.state.add_entry(name="Old lecture", createdAt=old)
    original_sha = kaltura_sim.state.original_bytes_sha256(entry_id)
    sync.sync_full(kaltura)
    librarian = make_user("lib", "librarian")
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    item = BatchItem.objects.get(batch=batch)
    assert item.planned_steps[:2] == ["copy", "verify"]

    # The job's first run: the copy step streams the object to S3, then the worker is SIGKILLed before verify
    # records the copy (the window between storage.upload_stream returning and _record_copy).
    claimed = batches.claim_item(item.id, item.job_id)
    run = runner.Run(batches.ITEMS, claimed, kaltura, store, librarian)
    run.read_state()
    batches.step_copy(run)
    assert store.head(entry_id).sha256 == original_sha and not ArchiveCopy.objects.exists()

    # RQ requeues the abandoned job (same token): it runs the item again, from live state.
    rq_queue.empty()
    batches.execute_item(item.id, item.job_id)
    item.refresh_from_db()
    # The rerun adopts the object the killed run uploaded (what it approved, and less), and goes on.
    assert item.status == BatchItem.Status.DONE, item.message
    assert ArchiveCopy.objects.get(entry_id=entry_id).sha256 == original_sha
    assert "flavors_deleted" in kaltura_sim.state.get_entry(entry_id)["tags"]


@pytest.mark.django_db(transaction=True)
def test_an_item_whose_worker_died_for_good_is_released_and_retried(kaltura_sim, s3, rq_queue, settings, make_user):
    from datetime import UTC, datetime, timedelta

    from rq import SimpleWorker

    from archive_app.archive import batches
    from archive_app.lib.kaltura import Kaltura
    from archive_app.mirror import sync
    from archive_app.models import Batch, BatchItem

    settings.KALTURA_RETRY_DELAYS = (0.01,)
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = kaltura_sim.state.add_entry(name="Old lecture", createdAt=old)
    sync.sync_full(Kaltura.from_settings())
    librarian = make_user("lib", "librarian")
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    rq_queue.empty()  # the job is lost: its worker was killed and RQ's retries are spent
    item = BatchItem.objects.get(batch=batch)
    assert batches.claim_item(item.id, item.job_id) is not None
    # Another batch cannot take the entry while the claim holds.
    other = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id])
    assert batches.release_stale_items(batch) == 0

    BatchItem.objects.filter(id=item.id).update(heartbeat_at=datetime.now(tz=UTC) - timedelta(days=1))
    assert batches.batch_retry_failed(batch, user=librarian) == 1
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    assert BatchItem.objects.get(batch=batch).status == BatchItem.Status.DONE
    assert "archived_to_s3" in kaltura_sim.state.get_entry(entry_id)["tags"]
    assert other.items.get().status == BatchItem.Status.PENDING
