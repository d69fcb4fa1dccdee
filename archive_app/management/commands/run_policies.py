"""What the scheduler runs: due policies make draft batches; batches whose notice period ended are queued."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from archive_app import audit
from archive_app.cli import command_origin
from archive_app.lib.kaltura import KalturaError
from archive_app.lib.storage import StorageError
from archive_app.models import ArchivePolicy
from archive_app.scheduling import notices, policies


class Command(BaseCommand):
    help = (
        "Make the batches of due archive policies (drafts that a librarian must approve) and queue approved "
        "batches whose owners' notice period has ended. Prints what it would do unless --execute is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--execute", action="store_true", help="really do it (default: report only)")
        parser.add_argument("--policy", metavar="NAME", help="run this policy now, whether due or not")

    def handle(self, *args, **options):
        execute = options["execute"]
        now = timezone.now()
        with audit.details_for_every_event(**command_origin()):
            return self.run(execute, now, options)

    def run(self, execute, now, options):
        try:
            if options["policy"]:
                # No policy name holds a NUL, and PostgreSQL refuses one in any query.
                name = options["policy"]
                policy = None if "\x00" in name else ArchivePolicy.objects.filter(name=name).first()
                if policy is None:
                    raise CommandError(f"no policy named {options['policy']!r}")
                runs = [policies.policy_run(policy, now=now, execute=execute)]
            else:
                runs = policies.policies_run_due(now=now, execute=execute)
            resent = notices.resend_unfinished(execute=execute)
            released = notices.release_due_batches(now=now, execute=execute)
        except (ImproperlyConfigured, KalturaError, StorageError) as exc:
            raise CommandError(str(exc)) from None
        for run in runs:
            line = f"policy {run['policy']!r}: "
            if "error" in run:
                line += f"error: {run['error']}"
            elif "skipped" in run:
                line += run["skipped"]
            else:
                line += f"{run['entries']} entries{' (capped at the batch size)' if run.get('capped') else ''}"
                if "batch" in run:
                    line += f"; draft batch {run['batch']} awaits approval"
            self.stdout.write(line)
        if not runs:
            self.stdout.write("no policy is due")
        for batch_id in resent:
            self.stdout.write(f"batch {batch_id}: owner notices not all sent{'; sending again' if execute else ''}")
        for release in released:
            if "error" in release:
                self.stdout.write(f"batch {release['batch']}: {release['error']}")
            elif execute:
                self.stdout.write(f"batch {release['batch']}: notice period over; {release['queued']} entries queued")
            else:
                self.stdout.write(f"batch {release['batch']}: notice period over; would be previewed and queued")
        if not execute:
            self.stdout.write("dry run: nothing was created or queued; add --execute to do it")
        errors = [r for r in [*runs, *released] if "error" in r]
        if errors:
            raise CommandError(f"{len(errors)} of {len(runs) + len(released)} failed; see above")
