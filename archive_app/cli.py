"""Selection options for management commands, defined once for every command that picks entries.

The options become the same data the browse page sends in its URL, validated by the
same FilterSet, so `list_entries --unplayed-for 3` and `/entries/?unplayed_years=3` select
the same entries. Use:

    def add_arguments(self, parser):
        add_filter_arguments(parser)

    def handle(self, *args, **options):
        entries = entries_from_options(options)  # CommandError naming the option if invalid
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import sys
from collections.abc import Mapping

from django.core.management.base import CommandError
from django.db.models import QuerySet

from archive_app.mirror.filters import SORTS
from archive_app.mirror.selectors import InvalidSelection, entry_list
from archive_app.models import Entry, EntryStatus, MediaType

# FilterSet field -> the option(s) a person typed, for error messages.
OPTION_FOR_FIELD = {
    "created_before_years": "--created-before",
    "created_within_years": "--created-within",
    "created_from": "--created-from",
    "created_to": "--created-to",
    "unplayed_years": "--unplayed-for",
    "played_within_years": "--played-within",
    "never_played": "--never-played",
    "plays_lt": "--plays-lt",
    "category": "--category",
    "tags": "--tag",
    "tags_excluded": "--tag !TAG",
    "status": "--status",
    "media_type": "--media-type",
    "state": "--state",
    "original_min": "--original-min",
    "original_max": "--original-max",
    "total_min": "--total-min",
    "total_max": "--total-max",
    "ids": "--id/--id-file",
    "include_gone": "--include-gone",
    "sort": "--sort",
    "__all__": "options",
}


def add_filter_arguments(parser) -> None:
    """Add the selection options. Values stay text here: the FilterSet validates them,
    so a bad value is one line naming the option rather than argparse's usage dump."""
    group = parser.add_argument_group("selection (the browse page's filters)")
    add = group.add_argument
    add("--created-before", metavar="YEARS", help="created more than YEARS years ago (decimals allowed)")
    add("--created-within", metavar="YEARS", help="created within the last YEARS years")
    add("--created-from", metavar="YYYY-MM-DD", help="created on or after this day")
    add("--created-to", metavar="YYYY-MM-DD", help="created on or before this day")
    add(
        "--unplayed-for",
        metavar="YEARS",
        help="not played for YEARS years; never-played entries count when created before then",
    )
    add("--played-within", metavar="YEARS", help="played within the last YEARS years")
    add("--never-played", action="store_true", help="never played")
    add("--plays-lt", metavar="N", help="played fewer than N times")
    add("--category", metavar="ID", action="append", default=[], help="in this category or below (repeatable)")
    add(
        "--tag",
        metavar="TAG",
        action="append",
        default=[],
        help="has exactly this tag; !TAG: has not (repeatable; all must hold)",
    )
    add("--status", metavar="NAME", action="append", default=[], help="entry status, e.g. READY or 2 (repeatable)")
    add("--media-type", metavar="NAME", action="append", default=[], help="e.g. VIDEO, AUDIO or 1 (repeatable)")
    add("--state", metavar="NAME", action="append", default=[], help="initial, archived or placeholder (repeatable)")
    add("--original-min", metavar="SIZE", help="original flavor at least SIZE, e.g. 500MB or 2GB")
    add("--original-max", metavar="SIZE", help="original flavor at most SIZE")
    add("--total-min", metavar="SIZE", help="all flavors together at least SIZE")
    add("--total-max", metavar="SIZE", help="all flavors together at most SIZE")
    add("--id", metavar="ID", action="append", default=[], help="this entry (repeatable)")
    add("--id-file", metavar="PATH", help="entry ids, one per line; - reads standard input")
    add("--include-gone", action="store_true", help="include entries no longer in Kaltura")
    add("--sort", metavar="FIELD", help=f"sort by one of {', '.join(SORTS)}; -FIELD for descending")


def _choice_values(names: list[str], choices) -> list[str]:
    """READY, ready, "no content" or 2 -> "2"; unknown names pass through for the form to refuse."""
    by_name = {choice.name: str(choice.value) for choice in choices}
    by_name.update({choice.label.upper().replace(" ", "_"): str(choice.value) for choice in choices})
    return [by_name.get(name.strip().upper().replace(" ", "_").replace("-", "_"), name.strip()) for name in names]


def _read_id_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read --id-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"cannot read --id-file {path}: not a text file") from None


def filter_data_from_options(options: Mapping) -> dict:
    """The parsed options as FilterSet data (the browse page's GET parameters)."""
    tags = [tag for tag in options.get("tag") or [] if not tag.startswith("!")]
    excluded = [tag[1:] for tag in options.get("tag") or [] if tag.startswith("!")]
    ids = list(options.get("id") or [])
    if options.get("id_file"):
        ids.append(_read_id_file(options["id_file"]))
    data = {
        "created_before_years": options.get("created_before"),
        "created_within_years": options.get("created_within"),
        "created_from": options.get("created_from"),
        "created_to": options.get("created_to"),
        "unplayed_years": options.get("unplayed_for"),
        "played_within_years": options.get("played_within"),
        "never_played": "on" if options.get("never_played") else None,
        "plays_lt": options.get("plays_lt"),
        "category": [str(category).strip() for category in options.get("category") or []],
        "tags": ",".join(tags),
        "tags_excluded": ",".join(excluded),
        "status": _choice_values(options.get("status") or [], EntryStatus),
        "media_type": _choice_values(options.get("media_type") or [], MediaType),
        "state": [state.strip().lower() for state in options.get("state") or []],
        "original_min": options.get("original_min"),
        "original_max": options.get("original_max"),
        "total_min": options.get("total_min"),
        "total_max": options.get("total_max"),
        "ids": "\n".join(ids),
        "include_gone": "on" if options.get("include_gone") else None,
        "sort": options.get("sort"),
    }
    return {name: value for name, value in data.items() if value not in (None, "", [])}


def describe_errors(errors: Mapping[str, list[str]]) -> str:
    """One line: "--unplayed-for: Enter a number.; --status: ..."."""
    return "; ".join(
        f"{OPTION_FOR_FIELD.get(field, field)}: {' '.join(messages)}" for field, messages in errors.items()
    )


def entries_from_options(options: Mapping, *, now: dt.datetime | None = None) -> QuerySet[Entry]:
    """The selected entries, sorted; CommandError naming the option for any invalid value."""
    try:
        return entry_list(data=filter_data_from_options(options), now=now)
    except InvalidSelection as exc:
        raise CommandError(describe_errors(exc.errors)) from None


# Far above any selection, far below what a database LIMIT accepts.
MAX_COUNT_OPTION = 10**9


def positive_int_option(option: str, value: str | None) -> int | None:
    """A count typed on the command line, 1 to a billion; CommandError naming the option otherwise."""
    if value is None:
        return None
    text = str(value).strip()
    # isascii: str.isdigit accepts "²" and other digits int() refuses.
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or len(digits) > 10 or not 1 <= int(digits or "0") <= MAX_COUNT_OPTION:
        raise CommandError(f"{option}: enter a whole number from 1 to {MAX_COUNT_OPTION:,}, got {text[:40]!r}")
    return int(text)


def username_option(option: str, value: str) -> str:
    """A user name as Django's sign-in accepts it (letters, digits and @.+-_, at most 150)."""
    from django.contrib.auth.validators import UnicodeUsernameValidator
    from django.core.exceptions import ValidationError

    text = (value or "").strip()
    try:
        if not text or len(text) > 150:
            raise ValidationError("enter 1 to 150 characters")
        UnicodeUsernameValidator()(text)
    except ValidationError as exc:
        raise CommandError(f"{option}: {' '.join(exc.messages)} (got {text[:40]!r})") from None
    return text


# The default --user: "whoever ran the command", told apart by the OS user and host every event records.
CLI_USERNAME = "cli"


def command_user(value: str, *, permission: str, role: str):
    """The user a command acts and is audited as. The default `cli` stands for the command line itself
    (`--execute` is its confirmation); a user named with --user must exist, be active and hold the role
    the action needs, so nothing is attributed to someone who could not have done it."""
    from django.contrib.auth.models import User

    username = username_option("--user", value)
    if username == CLI_USERNAME:
        return User.objects.get_or_create(username=CLI_USERNAME)[0]
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"--user {username}: no active user of that name (create_user makes one)")
    if not user.has_perm(permission):
        raise CommandError(f"--user {username}: does not hold the {role} role, which this needs")
    return user


def command_origin() -> dict:
    """Who ran the command, from where: recorded on every audit event it writes."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        os_user = f"uid {os.getuid()}"
    return {"via": "command line", "os_user": os_user, "host": socket.gethostname()}
