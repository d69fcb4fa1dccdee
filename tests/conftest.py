"""Fixtures: the real services (Kaltura simulator, moto S3, Redis) and a real browser."""

from __future__ import annotations

import os
import shutil

import boto3
import pytest
from django.conf import settings as django_settings

from tests.services import MotoServer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEST_BUCKET = "kaltura-archive-test"


# --- Kaltura ----------------------------------------------------------------------


@pytest.fixture
def make_kaltura_sim():
    """Start simulators with chosen data; all are stopped after the test."""
    from kaltura_sim import start_in_thread

    started = []

    def make(**options):
        options.setdefault("entries", 200)
        options.setdefault("content_scale", 1e-4)
        sim = start_in_thread(**options)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def kaltura_sim(make_kaltura_sim, settings):
    """A small simulator, and the Django settings pointing at it."""
    sim = make_kaltura_sim()
    settings.KALTURA_SERVICE_URL = sim.url
    settings.KALTURA_PARTNERID = sim.partner_id
    settings.KALTURA_SECRET = sim.admin_secret
    settings.KALTURA_USERID = "kaltura-archive-tests"
    return sim


# --- S3 ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server, settings, monkeypatch):
    """An empty bucket on moto's server, with settings and boto3's environment pointing at it."""
    moto_server.reset()
    for name, value in {
        "AWS_ENDPOINT_URL": moto_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
        setattr(settings, name, value)
    settings.AWS_BUCKET = TEST_BUCKET
    client = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    client.create_bucket(Bucket=TEST_BUCKET)
    return client


# --- Redis / RQ -------------------------------------------------------------------


@pytest.fixture
def rq_queue():
    """The default queue, emptied before and after the test."""
    import django_rq

    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


# --- Browser ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import User

    from archive_app.roles import assign_role

    def make(username: str = "librarian", role: str | None = "librarian", password: str = "correct-horse-battery"):
        user = User.objects.create_user(username=username, password=password)
        if role:
            assign_role(user, role)
        user.raw_password = password
        return user

    return make


@pytest.fixture
def sign_in(page):
    """Sign a user in through the login form, as a person would."""

    def sign_in_as(user):
        page.goto("/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", user.raw_password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=signed-in-user]")
        return page

    return sign_in_as


def pytest_report_header(config):
    return f"database: {django_settings.DATABASES['default']['ENGINE']}, redis: {django_settings.REDIS_URL}"


# --- Policies and owner notices -----------------------------------------------------


@pytest.fixture
def policy_world(kaltura_sim, s3, rq_queue, settings, make_user):
    """Old entries tagged "forgotten" owned by alice (2), bob, carol (no e-mail) and ghost (no Kaltura user)."""
    from tests.policy_world import make_world

    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    return make_world(kaltura_sim, make_user)
