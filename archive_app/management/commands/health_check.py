from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from archive_app.archive.health import UNVERSIONED_BUCKET, entry_problems
from archive_app.archive.restores import known_placeholder_sizes
from archive_app.archive.workflow import read_live_states
from archive_app.cli import add_filter_arguments, entries_from_options
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.models import archive_state_from_tags


class Command(BaseCommand):
    help = (
        "Check the selected entries against the archive's invariants, on live Kaltura and S3 state. "
        "Prints TSV (entry id, archive state, problems); exits non-zero if any entry is unhealthy."
    )

    def add_arguments(self, parser):
        add_filter_arguments(parser)
        parser.add_argument("--all", action="store_true", help="also print healthy entries")

    def handle(self, *args, **options):
        entry_ids = list(entries_from_options(options).values_list("id", flat=True))
        try:
            kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        unhealthy = 0
        known = known_placeholder_sizes()
        try:
            if not store.versioning_enabled():
                self.stderr.write(f"warning: {UNVERSIONED_BUCKET}")
        except StorageError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("entry_id\tstate\tproblems")
        for start in range(0, len(entry_ids), 500):
            chunk = entry_ids[start : start + 500]
            try:
                states = read_live_states(chunk, kaltura, store)
            except (KalturaError, StorageError) as exc:
                raise CommandError(str(exc)) from None
            for entry_id in chunk:
                problems = entry_problems(states[entry_id], known_placeholder_sizes=known)
                unhealthy += bool(problems)
                if problems or options["all"]:
                    state = archive_state_from_tags(", ".join(states[entry_id].tags))
                    self.stdout.write(f"{entry_id}\t{state}\t{'; '.join(problems) or 'ok'}")
        if unhealthy:
            raise CommandError(f"{unhealthy} of {len(entry_ids)} entries are unhealthy")
        self.stderr.write(f"all {len(entry_ids)} entries are healthy")
