from archive_app.management.commands._batch_command import BatchCommand
from archive_app.models import Batch


class Command(BatchCommand):
    help = (
        "Copy the originals of the selected entries to S3 (with --replace: then replace them with the placeholder). "
        "Prints the plan and changes nothing unless --execute is given."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--replace", action="store_true", help="also replace each archived video")

    def batch_action(self, options) -> str:
        return Batch.Action.ARCHIVE_REPLACE if options["replace"] else Batch.Action.ARCHIVE
