from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.mirror import sync
from archive_app.models import SyncRun


class Command(BaseCommand):
    help = (
        "Mirror Kaltura into the database. By default: entries changed since the last sync, then recent plays "
        "(a full pass if there has never been one). It only reads Kaltura; it changes nothing there."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--full", action="store_true", help="every entry of every status; marks vanished ones gone")
        mode.add_argument("--plays", action="store_true", help="only refresh last played / plays")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, full, plays, no_progress, **options):
        try:
            kaltura = Kaltura.from_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        bar = None

        def progress(run: SyncRun) -> None:
            nonlocal bar
            if no_progress:
                return
            if bar is None:
                bar = tqdm(total=run.total_expected or None, unit="entries", desc=f"{run.kind} sync")
            bar.update(run.seen - bar.n)

        try:
            if full:
                runs = [sync.sync_full(kaltura, progress)]
            elif plays:
                runs = [sync.sync_plays(kaltura, progress)]
            else:
                runs = [sync.sync_incremental(kaltura, progress)]
                if runs[0].kind != SyncRun.Kind.FULL:
                    runs.append(sync.sync_plays(kaltura, progress))
        except sync.SyncBusy as exc:
            raise CommandError(str(exc)) from None
        except KalturaError as exc:
            raise CommandError(f"Kaltura: {exc}; rerun to continue from where it stopped") from None
        finally:
            if bar is not None:
                bar.close()
        for run in runs:
            self.stdout.write(
                f"{run.kind}: {run.seen} seen, {run.created} created, {run.updated} updated, "
                f"{run.unchanged} unchanged, {run.gone} gone, {run.kaltura_requests} Kaltura requests"
            )
            if run.cost_summary:
                self.stdout.write(f"  {run.cost_summary}")
