"""restore_entries: bring archived originals back in place of their placeholders (dry run unless --execute)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from archive_app import audit
from archive_app.archive import restores
from archive_app.cli import (
    CLI_USERNAME,
    add_filter_arguments,
    command_origin,
    command_user,
    entries_from_options,
    username_option,
)
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.models import Restore

# A restore waiting on Glacier is settled for the command: the scheduled poller finishes it hours later.
SETTLED = {
    Restore.Status.DONE,
    Restore.Status.FAILED,
    Restore.Status.ERRORED,
    Restore.Status.CANCELLED,
    Restore.Status.WAITING,
}


class Command(BaseCommand):
    help = (
        "Restore the selected placeholders from their S3 copies (placeholders only, unless --id names entries). "
        "Prints the plan and changes nothing unless --execute is given."
    )

    def add_arguments(self, parser):
        add_filter_arguments(parser)
        parser.add_argument("--max-entries", type=int, help="at most this many entries of the selection")
        parser.add_argument(
            "--tier",
            help=f"Glacier retrieval tier: Bulk, Standard or Expedited (default {settings.ARCHIVE_RESTORE_TIER})",
        )
        parser.add_argument("--execute", action="store_true", help="really do it (default: print the plan only)")
        parser.add_argument(
            "--user",
            default=CLI_USERNAME,
            help="the archive admin the audit log names, who must hold the role (default: cli, the command line "
            "itself; every event also records the OS user and host)",
        )
        parser.add_argument("--no-wait", action="store_true", help="with --execute: return once requested")
        parser.add_argument(
            "--in-process", action="store_true", help="with --execute: run the jobs in this process, not on workers"
        )

    def handle(self, *args, **options):
        username_option("--user", options["user"])  # a malformed name is refused before anything is read
        tier = (options["tier"] or settings.ARCHIVE_RESTORE_TIER).capitalize()
        if tier not in Restore.Tier.values:
            raise CommandError(f"--tier must be one of {', '.join(Restore.Tier.values)}, got {options['tier']!r}")
        if options["max_entries"] is not None and options["max_entries"] < 1:
            raise CommandError("--max-entries must be at least 1")
        if not options["id"] and not options["id_file"] and not options["state"]:
            options["state"] = ["placeholder"]
        entry_ids = list(entries_from_options(options).values_list("id", flat=True)[: options["max_entries"]])
        if not entry_ids:
            raise CommandError("the selection is empty")
        try:
            kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
            user = command_user(options["user"], permission="archive_app.restore_entries", role="Archive admins")
            with audit.details_for_every_event(**command_origin()):
                if not options["execute"]:
                    return self.dry_run(entry_ids, tier, user, kaltura, store)
                return self.request_restores(entry_ids, tier, user, kaltura, store, options)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except (KalturaError, StorageError) as exc:
            raise CommandError(str(exc)) from None

    def dry_run(self, entry_ids, tier, user, kaltura, store):
        todo = 0
        for entry_id in entry_ids:
            plan = restores.restore_preview(
                entry_id, tier=tier, user=user, kaltura=kaltura, store=store, via="command line"
            )
            wait = f"\twait: {plan.wait}" if plan.wait else ""
            self.stdout.write(f"{entry_id}\t{plan.storage_class or '-'}\t{plan.summary()}{wait}")
            for warning in plan.warnings:
                self.stdout.write(f"{entry_id}\twarning: {warning}")
            todo += not plan.skipped and not plan.already_restored
        self.stdout.write(
            f"dry run: {len(entry_ids)} entries, {todo} to restore ({tier} tier where Glacier must restore first). "
            "Nothing was changed; add --execute to do it."
        )

    def request_restores(self, entry_ids, tier, user, kaltura, store, options):
        requested: list[int] = []
        for entry_id in entry_ids:
            try:
                restore, created = restores.restore_request(
                    entry_id=entry_id, tier=tier, source=Restore.Source.MANUAL, user=user, kaltura=kaltura, store=store
                )
            except restores.RestoreError as exc:
                self.stderr.write(f"{entry_id}\tskipped: {exc}")
                continue
            requested.append(restore.pk)
            if not created:
                self.stdout.write(f"{entry_id}\talready under way (restore {restore.pk}, {restore.status})")
        if not requested:
            raise CommandError("nothing to restore in the selection")
        self.stdout.write(f"{len(requested)} restores requested")
        if options["in_process"]:
            import django_rq
            from rq import SimpleWorker

            queue = django_rq.get_queue("default")
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
        if options["no_wait"]:
            return
        self.wait_for(requested)

    def wait_for(self, restore_ids: list[int]) -> None:
        rows = Restore.objects.filter(pk__in=restore_ids)
        with tqdm(total=len(restore_ids), unit="entries", desc="restoring") as bar:
            while True:
                statuses = list(rows.values_list("status", flat=True))
                settled = sum(status in SETTLED for status in statuses)
                bar.update(settled - bar.n)
                if settled == len(restore_ids):
                    break
                time.sleep(1)
        for restore in rows.filter(status=Restore.Status.WAITING):
            ready = restore.expected_ready_at
            self.stdout.write(
                f"{restore.entry_id}\twaiting on S3 {restore.storage_class} ({restore.tier})"
                + (f", expected by {ready:%Y-%m-%d %H:%M} UTC" if ready else "")
            )
        failed = list(rows.filter(status__in=[Restore.Status.FAILED, Restore.Status.ERRORED]))
        for restore in failed:
            self.stderr.write(f"{restore.entry_id}\tfailed: {restore.error}")
        counts = {
            label: statuses.count(status)
            for status, label in [
                ("done", "restored"),
                ("waiting", "waiting on Glacier"),
                ("failed", "failed"),
                ("cancelled", "cancelled"),
            ]
        }
        self.stdout.write(", ".join(f"{count} {label}" for label, count in counts.items() if count))
        if failed:
            raise CommandError(f"{len(failed)} of {len(restore_ids)} restores failed; see the messages above")
