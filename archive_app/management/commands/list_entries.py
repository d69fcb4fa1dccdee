from __future__ import annotations

from django.core.management.base import BaseCommand

from archive_app.cli import add_filter_arguments, entries_from_options, positive_int_option
from archive_app.mirror.selectors import delimited_lines, entry_export_rows


class Command(BaseCommand):
    help = (
        "List the mirrored entries the selection options pick, as TSV (default) or CSV with a header row: "
        "the same columns as the browse page's export. Written as it is read, so any size works."
    )

    def add_arguments(self, parser):
        add_filter_arguments(parser)
        parser.add_argument("--format", choices=["tsv", "csv"], default="tsv")
        parser.add_argument("--max-entries", metavar="N", help="stop after N entries")

    def handle(self, *args, **options):
        max_entries = positive_int_option("--max-entries", options["max_entries"])
        entries = entries_from_options(options)
        if max_entries is not None:
            entries = entries[:max_entries]
        for line in delimited_lines(entry_export_rows(queryset=entries), fmt=options["format"]):
            self.stdout.write(line, ending="")
