"""Sign-in, roles, configuration messages and the home page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from archive_app.roles import ARCHIVE_ADMINS, LIBRARIANS, user_role

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KALTURA_", "DJANGO_", "AWS_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_role_groups_are_created_by_the_migration():
    librarians = set(Group.objects.get(name=LIBRARIANS).permissions.values_list("codename", flat=True))
    admins = set(Group.objects.get(name=ARCHIVE_ADMINS).permissions.values_list("codename", flat=True))
    assert {"browse_entries", "run_batches"} <= librarians
    assert "restore_entries" not in librarians
    assert librarians < admins
    assert {"restore_entries", "manage_archive", "add_user"} <= admins


@pytest.mark.django_db
def test_every_page_requires_sign_in(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_home_page_shows_states_to_a_librarian(client, make_user):
    client.force_login(make_user())
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert b"Not archived" in response.content
    assert b"Sign out" in response.content


@pytest.mark.django_db
def test_create_user_command_assigns_exactly_one_role(capsys):
    call_command("create_user", "carol", "--role", "librarian")
    output = capsys.readouterr().out
    assert "created librarian carol" in output
    password = output.split("password: ")[1].strip()
    carol = User.objects.get(username="carol")
    assert carol.check_password(password)
    assert user_role(carol) == "librarian" and not carol.is_staff

    call_command("create_user", "carol", "--role", "admin", "--keep-password")
    carol.refresh_from_db()
    assert user_role(carol) == "admin" and carol.is_staff
    assert list(carol.groups.values_list("name", flat=True)) == [ARCHIVE_ADMINS]
    assert carol.check_password(password)


@pytest.mark.django_db
def test_create_user_rejects_weak_password_and_keeps_nothing(tmp_path):
    weak = tmp_path / "pw"
    weak.write_text("123\n")
    with pytest.raises(CommandError, match="password rejected"):
        call_command("create_user", "dave", "--role", "librarian", "--password-file", str(weak))
    assert not User.objects.filter(username="dave").exists()


def test_missing_secret_key_is_one_clear_line():
    result = run_manage("check")
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KALTURA_PARTNERID", "not-a-number"),
        ("ARCHIVE_STORAGE_CLASS", "GLACIAL"),
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x"),
    ],
)
def test_wrong_setting_names_the_variable(variable, value):
    result = run_manage("check", env={"DJANGO_SECRET_KEY": "x", variable: value})
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_from_file_is_read_and_never_printed(tmp_path):
    secret_file = tmp_path / "kaltura-secret"
    secret_file.write_text("s3cr3t-from-file\n")
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(len(settings.KALTURA_SECRET))",
        env={"DJANGO_SECRET_KEY": "x", "KALTURA_SECRET_FILE": str(secret_file)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("16")
    assert "s3cr3t" not in result.stdout + result.stderr


def test_secret_file_that_cannot_be_read_is_named(tmp_path):
    result = run_manage(
        "check", env={"DJANGO_SECRET_KEY": "x", "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "missing")}
    )
    assert result.returncode == 2
    assert "AWS_SECRET_ACCESS_KEY_FILE" in result.stderr


def test_deploy_check_names_missing_service_settings():
    result = run_manage("check", "--deploy", env={"DJANGO_SECRET_KEY": "x" * 60})
    assert "KALTURA_PARTNERID is not set" in result.stderr
    assert "AWS_BUCKET is not set" in result.stderr


def test_placeholder_video_is_shipped_and_short():
    placeholder = ROOT / "assets" / "placeholder.mp4"
    data = placeholder.read_bytes()
    assert data[4:8] == b"ftyp", "not an MP4 file"
    assert len(data) < 200_000


@pytest.mark.browser
def test_sign_in_through_the_browser_and_see_home(page, sign_in, make_user):
    user = make_user("librarian-lin")
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text().startswith("Your username and password didn't match")
    sign_in(user)
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.get_by_test_id("signed-in-user").inner_text() == "librarian-lin"
    assert page.get_by_test_id("state-initial").is_visible()
    page.click("text=Sign out")
    page.wait_for_url("**/login/")
