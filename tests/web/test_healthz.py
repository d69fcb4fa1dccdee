"""/healthz against the real Redis: rq's own worker, scheduler-lock and cron-scheduler records."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rq import Worker
from rq.cron import CronScheduler
from rq.scheduler import RQScheduler

pytestmark = pytest.mark.django_db


@pytest.fixture
def services(rq_queue):
    """A worker (with rq's scheduler lock, as `rqworker --with-scheduler` takes it) and a cron
    scheduler, registered in Redis the way the running processes register themselves."""
    conn = rq_queue.connection
    worker = Worker([rq_queue], connection=conn, name="healthz-test-worker")
    worker.register_birth()
    worker.heartbeat()
    scheduler = RQScheduler([rq_queue], connection=conn)
    scheduler.acquire_locks()
    cron = CronScheduler(connection=conn, name="healthz-test-cron")
    cron.register_birth()
    cron.heartbeat()
    yield {"worker": worker, "scheduler": scheduler, "cron": cron, "conn": conn}


def _health(client):
    response = client.get(reverse("healthz"))
    return response.status_code, json.loads(response.content)


def test_all_alive_is_200_without_signing_in(client, services):
    status, body = _health(client)
    assert status == 200
    assert body["checks"]["scheduler"].pop("last_heartbeat_seconds") <= 5
    assert body == {
        "status": "ok",
        "checks": {
            "database": {"ok": True},
            "redis": {"ok": True},
            "workers": {"ok": True, "count": 1, "retry_scheduler": True},
            "scheduler": {"ok": True, "count": 1},
        },
    }
    assert "no-cache" in client.get(reverse("healthz"))["Cache-Control"]


def test_a_stopped_worker_is_503(client, services):
    services["worker"].register_death()
    status, body = _health(client)
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"]["workers"] == {"ok": False, "count": 0, "retry_scheduler": True}


def test_no_retry_scheduler_is_503(client, services):
    services["scheduler"].release_locks()
    status, body = _health(client)
    assert status == 503 and body["checks"]["workers"]["retry_scheduler"] is False


def test_a_stopped_cron_scheduler_is_503(client, services):
    services["cron"].register_death()
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["scheduler"] == {"ok": False, "count": 0, "last_heartbeat_seconds": None}


def test_a_silent_cron_scheduler_is_503(client, services):
    # Its last heartbeat three minutes ago: the process hangs or is gone without saying so.
    conn = services["conn"]
    conn.zadd("rq:cron_schedulers", {services["cron"].name: services["cron"].last_heartbeat.timestamp() - 180})
    status, body = _health(client)
    assert status == 503 and body["checks"]["scheduler"]["ok"] is False


def test_redis_down_is_503_and_tells_nothing_more(client, services, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["redis"] == {"ok": False}
    assert body["checks"]["workers"] == body["checks"]["scheduler"] == {"ok": False}
    assert "127.0.0.1" not in json.dumps(body)


def test_only_get(client):
    assert client.post(reverse("healthz")).status_code == 405


def test_a_load_balancer_asks_only_what_a_web_machine_needs(client, services):
    services["worker"].register_death()
    response = client.get(reverse("healthz"), {"checks": "database,redis"})
    assert response.status_code == 200
    assert json.loads(response.content)["checks"] == {"database": {"ok": True}, "redis": {"ok": True}}
    assert client.get(reverse("healthz"), {"checks": "workers"}).status_code == 503


@pytest.mark.parametrize("checks", ["", "database,disk", "redis;workers", "x" * 5000])
def test_unknown_checks_are_a_400(client, checks):
    response = client.get(reverse("healthz"), {"checks": checks})
    assert response.status_code == 400
