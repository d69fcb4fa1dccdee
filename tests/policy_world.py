"""A small partner for the policy and notice tests: four owners, old forgotten entries, one category tree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rq import SimpleWorker

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import ArchivePolicy


@dataclass
class World:
    sim: object
    entries: dict[str, list[str]]  # owner -> entry ids
    librarian: object

    def all_entries(self) -> list[str]:
        return [entry_id for ids in self.entries.values() for entry_id in ids]


def make_world(kaltura_sim, make_user) -> World:
    state = kaltura_sim.state
    state.add_user("alice", email="alice@example.edu")
    state.add_user("bob", email="bob@example.edu")
    state.add_user("carol", email=None)  # a Kaltura account without an address
    old = int((datetime.now(tz=UTC) - timedelta(days=6 * 365)).timestamp())
    entries = {
        owner: [
            state.add_entry(name=f"{owner.title()} lecture {n}", createdAt=old, tags="forgotten", userId=owner)
            for n in range(count)
        ]
        # "ghost" is no Kaltura user at all (departed, account removed).
        for owner, count in {"alice": 2, "bob": 1, "carol": 1, "ghost": 1}.items()
    }
    sync.sync_full(Kaltura.from_settings())
    return World(kaltura_sim, entries, make_user("lib", "librarian"))


def make_policy(world: World, **fields) -> ArchivePolicy:
    values = {
        "name": "Forgotten lectures",
        "filter_query": "tags=forgotten",
        "action": "archive",
        "schedule": "monthly",
        "notice_days": 14,
        "next_run_at": timezone.now() - timedelta(minutes=1),
        "created_by": world.librarian,
    }
    values.update(fields)
    return ArchivePolicy.objects.create(**values)


def run_jobs(queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def keep_token_from(message) -> str:
    """The keep link's token: after the "#" of the link in the e-mail, never in its path."""
    match = re.search(r"https?://[^/\s]+/keep/#(\S+)", message.body)
    assert match, message.body
    return match.group(1)


def open_keep_link(client, token: str):
    """What the keep page's script does with the link: post its token."""
    return client.post("/keep/", {"token": token})


def keep_with_link(client, token: str, entry_ids: list[str]):
    return client.post("/keep/", {"token": token, "action": "keep", "keep": entry_ids})


def tags_of(world: World, entry_id: str) -> set[str]:
    return {t.strip() for t in world.sim.state.get_entry(entry_id)["tags"].split(",") if t.strip()}
