from __future__ import annotations

from django.core.management.base import BaseCommand

from archive_app.cli import add_filter_arguments, entries_from_options


class Command(BaseCommand):
    help = "Print how many mirrored entries the selection options pick (the browse page's filters)."

    def add_arguments(self, parser):
        add_filter_arguments(parser)

    def handle(self, *args, **options):
        self.stdout.write(str(entries_from_options(options).order_by().count()))
