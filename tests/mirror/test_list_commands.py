"""list_entries and count_entries: the browse page's selection on the command line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from archive_app.cli import filter_data_from_options
from archive_app.mirror.selectors import EXPORT_COLUMNS
from archive_app.models import TAG_ARCHIVED, TAG_REPLACED, EntryStatus
from tests.factories import YEAR, make_category, make_entry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def library(db):
    now = timezone.now()
    root = make_category(1, "Root")
    child = make_category(12, "Child", root)
    make_category(100, "Elsewhere")
    make_entry("1_aaaaaaaa", name="=1+1", created_at=now - 6 * YEAR, tags="lecture", categories=[child], plays=2)
    make_entry("1_bbbbbbbb", created_at=now - 4 * YEAR, last_played_at=now - 3 * YEAR, plays=5, tags=TAG_ARCHIVED)
    make_entry("1_cccccccc", created_at=now - YEAR, last_played_at=now, plays=50, status=EntryStatus.NO_CONTENT)
    make_entry("1_dddddddd", created_at=now - 8 * YEAR, tags=f"{TAG_ARCHIVED}, {TAG_REPLACED}", categories=[root])
    make_entry("1_eeeeeeee", created_at=now - 9 * YEAR, gone=True)


def run(command, *args, **options) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, **options)
    return out.getvalue()


def listed_ids(output: str, delimiter: str = "\t") -> list[str]:
    rows = list(csv.reader(io.StringIO(output), delimiter=delimiter))
    assert rows[0] == EXPORT_COLUMNS
    return [row[EXPORT_COLUMNS.index("id")] for row in rows[1:]]


def test_list_defaults_to_tsv_newest_first_without_gone(library):
    output = run("list_entries")
    assert output.splitlines()[0] == "\t".join(EXPORT_COLUMNS)
    assert listed_ids(output) == ["1_cccccccc", "1_bbbbbbbb", "1_aaaaaaaa", "1_dddddddd"]


def test_list_as_csv_with_the_formula_guard(library):
    output = run("list_entries", "--format", "csv", "--id", "1_aaaaaaaa")
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[1][EXPORT_COLUMNS.index("name")] == "'=1+1"
    assert output.endswith("\r\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--unplayed-for", "2"], {"1_aaaaaaaa", "1_bbbbbbbb", "1_dddddddd"}),
        (["--unplayed-for", "2", "--state", "initial", "--state", "ARCHIVED"], {"1_aaaaaaaa", "1_bbbbbbbb"}),
        (["--played-within", "2"], {"1_cccccccc"}),
        (["--never-played", "--created-before", "7"], {"1_dddddddd"}),
        (["--created-within", "5"], {"1_bbbbbbbb", "1_cccccccc"}),
        (["--category", "1"], {"1_aaaaaaaa", "1_dddddddd"}),
        (["--category", "12"], {"1_aaaaaaaa"}),
        (["--tag", "archived_to_s3"], {"1_bbbbbbbb", "1_dddddddd"}),
        (["--tag", "archived_to_s3", "--tag", "!flavors_deleted"], {"1_bbbbbbbb"}),
        (["--plays-lt", "5"], {"1_aaaaaaaa", "1_dddddddd"}),
        (["--status", "no content"], {"1_cccccccc"}),
        (["--status", "ready", "--status", "7"], {"1_aaaaaaaa", "1_bbbbbbbb", "1_cccccccc", "1_dddddddd"}),
        (["--media-type", "audio"], set()),
        (["--id", "1_aaaaaaaa", "--id", "1_eeeeeeee"], {"1_aaaaaaaa"}),
        (["--id", "1_eeeeeeee", "--include-gone"], {"1_eeeeeeee"}),
        (["--total-min", "110MB"], {"1_aaaaaaaa", "1_bbbbbbbb", "1_cccccccc", "1_dddddddd"}),
        (["--total-max", "0.1 GB"], set()),
    ],
)
def test_options_select_like_the_browse_page(library, args, expected):
    assert set(listed_ids(run("list_entries", *args))) == expected
    assert run("count_entries", *args).strip() == str(len(expected))


def test_max_entries_stops_early(library):
    assert listed_ids(run("list_entries", "--max-entries", "2", "--sort", "id")) == ["1_aaaaaaaa", "1_bbbbbbbb"]


def test_ids_from_a_file_and_from_stdin(library, tmp_path, monkeypatch):
    id_file = tmp_path / "ids.txt"
    id_file.write_text("1_aaaaaaaa\n\n1_dddddddd\n")
    assert run("count_entries", "--id-file", str(id_file)).strip() == "2"
    monkeypatch.setattr("sys.stdin", io.StringIO("1_bbbbbbbb\n"))
    assert listed_ids(run("list_entries", "--id-file", "-")) == ["1_bbbbbbbb"]


def test_filter_data_uses_the_browse_page_parameter_names():
    data = filter_data_from_options(
        {"unplayed_for": "3", "tag": ["a", "!b", "c"], "status": ["READY", "bogus"], "never_played": True}
    )
    assert data == {
        "unplayed_years": "3",
        "tags": "a,c",
        "tags_excluded": "b",
        "status": ["2", "bogus"],
        "never_played": "on",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unplayed-for", "-1"], "--unplayed-for: Ensure this value is greater than or equal to 0."),
        (["--created-before", str(10**30)], "--created-before: "),
        (["--status", "sleeping"], "--status: Select a valid choice. sleeping is not one of the available choices."),
        (["--state", "deleted"], "--state: "),
        (["--category", "999"], "--category: There is no category with id 999."),
        (["--id", "not-an-id"], "--id/--id-file: Not an entry id"),
        (["--plays-lt", "many"], "--plays-lt: Enter a whole number."),
        (["--original-min", "5 XB"], "--original-min: Enter a size"),
        (["--sort", "tags_search"], "--sort: Select a valid choice."),
        (["--tag", "!" + "x" * 2100], "--tag !TAG: "),
    ],
)
def test_invalid_values_name_the_option(library, args, message):
    with pytest.raises(CommandError) as raised:
        run("count_entries", *args)
    assert message in str(raised.value)


def test_missing_id_file_is_a_clear_error(library, tmp_path):
    with pytest.raises(CommandError, match=r"cannot read --id-file .*missing.txt: No such file or directory"):
        run("list_entries", "--id-file", str(tmp_path / "missing.txt"))


def test_bad_max_entries(library):
    with pytest.raises(CommandError, match="--max-entries"):
        run("list_entries", "--max-entries", "0")


def manage(*args: str, database: Path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KALTURA_", "DJANGO_", "AWS_"))}
    environment.update({"DJANGO_SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{database}"})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_a_bad_option_is_one_line_without_traceback_and_touches_no_database(tmp_path):
    database = tmp_path / "never-created.sqlite3"
    result = manage("count_entries", "--unplayed-for", "ten", "--status", "sleeping", database=database)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: --unplayed-for: Enter a number.; "
        "--status: Select a valid choice. sleeping is not one of the available choices."
    ]
    assert "Traceback" not in result.stderr
    assert not database.exists()


def test_a_missing_id_file_in_a_real_run(tmp_path):
    result = manage("list_entries", "--id-file", str(tmp_path / "nope"), database=tmp_path / "db.sqlite3")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"CommandError: cannot read --id-file {tmp_path / 'nope'}: No such file or directory"
    )
