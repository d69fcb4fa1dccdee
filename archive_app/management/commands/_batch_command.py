"""What archive_entries and replace_entries share: select, plan (dry run) or execute, wait."""

from __future__ import annotations

import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from archive_app import audit
from archive_app.archive import batches
from archive_app.archive.workflow import Policy, plan_for, read_live_states
from archive_app.cli import (
    CLI_USERNAME,
    add_filter_arguments,
    command_origin,
    command_user,
    entries_from_options,
    positive_int_option,
    username_option,
)
from archive_app.lib import bulk
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.redaction import redact
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.models import AuditEvent, Batch, BatchItem

FINISHED = {BatchItem.Status.DONE, BatchItem.Status.SKIPPED, *BatchItem.RETRYABLE, BatchItem.Status.CANCELLED}


def human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"


class BatchCommand(BaseCommand):
    action: str = ""

    def add_arguments(self, parser):
        add_filter_arguments(parser)
        parser.add_argument("--max-entries", metavar="N", help="at most this many entries of the selection")
        parser.add_argument("--execute", action="store_true", help="really do it (default: print the plan only)")
        parser.add_argument(
            "--user",
            default=CLI_USERNAME,
            help="the librarian the audit log names, who must hold the role (default: cli, the command line itself; "
            "every event also records the OS user and host)",
        )
        parser.add_argument("--no-wait", action="store_true", help="with --execute: return once queued")
        parser.add_argument(
            "--in-process", action="store_true", help="with --execute: run the jobs in this process, not on workers"
        )

    def batch_action(self, options) -> str:
        return self.action

    def handle(self, *args, **options):
        max_entries = positive_int_option("--max-entries", options["max_entries"])
        username_option("--user", options["user"])  # a malformed name is refused before anything is read
        action = self.batch_action(options)
        entries = entries_from_options(options)
        entry_ids = list(entries.values_list("id", flat=True)[:max_entries])
        if not entry_ids:
            raise CommandError("the selection is empty")
        try:
            kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
            user = command_user(options["user"], permission="archive_app.run_batches", role="Librarians")
            with audit.details_for_every_event(**command_origin()):
                if options["execute"]:
                    return self.run_batch(action, entry_ids, user, kaltura, store, options)
                return self.dry_run(action, entry_ids, user, kaltura, store)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except (KalturaError, StorageError, batches.BatchError) as exc:
            raise CommandError(str(exc)) from None

    def dry_run(self, action, entry_ids, user, kaltura, store):
        states = read_live_states(entry_ids, kaltura, store)
        policy = Policy.from_settings(timezone.now())
        plans = [plan_for(action, states[entry_id], policy) for entry_id in entry_ids]
        bulk.create(AuditEvent, batches.preview_events(None, action, plans, user))
        for plan in plans:
            self.stdout.write(redact(f"{plan.entry_id}\t{plan.summary()}"))  # a Kaltura text may quote a KS
        todo = [plan for plan in plans if not plan.skipped]
        self.stdout.write(
            f"dry run: {len(plans)} entries, {len(todo)} to process, {len(plans) - len(todo)} skipped; "
            f"{human_bytes(sum(p.bytes_to_copy for p in todo))} to copy, "
            f"{human_bytes(sum(p.bytes_freed for p in todo))} to free. Nothing was changed; add --execute to do it."
        )

    def run_batch(self, action, entry_ids, user, kaltura, store, options):
        batch = batches.batch_create(
            user=user,
            action=action,
            entry_ids=entry_ids,
            filter_query="(command line)",
            preview=True,
            kaltura=kaltura,
            store=store,
        )
        with transaction.atomic():
            batch = batches.batch_approve(batch, user=user)
        if batch.status == Batch.Status.DRAFT:
            self.stdout.write(f"batch {batch.pk} needs a second approval in the dashboard before it runs")
            return
        self.stdout.write(f"batch {batch.pk}: {batch.items.count()} entries queued")
        if options["in_process"]:
            import django_rq
            from rq import SimpleWorker

            queue = django_rq.get_queue("default")
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
        if options["no_wait"]:
            return
        self.wait_for(batch)

    def wait_for(self, batch: Batch) -> None:
        total = batch.items.count()
        with tqdm(total=total, unit="entries", desc=f"batch {batch.pk}") as bar:
            while True:
                statuses = list(batch.items.values_list("status", flat=True))
                finished = sum(status in FINISHED for status in statuses)
                bar.update(finished - bar.n)
                if finished == total:
                    break
                time.sleep(1)
        failed = batch.items.filter(status__in=BatchItem.RETRYABLE)
        for item in failed:
            self.stderr.write(f"{item.entry_id}\tfailed: {item.message}")
        counts = {status: statuses.count(status) for status in FINISHED}
        self.stdout.write(", ".join(f"{count} {status}" for status, count in counts.items() if count))
        if failed:
            raise CommandError(f"{failed.count()} of {total} entries failed; see the messages above")
