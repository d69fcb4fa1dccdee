from archive_app.management.commands._batch_command import BatchCommand
from archive_app.models import Batch


class Command(BatchCommand):
    help = (
        "Replace the selected, already archived videos with the placeholder (only behind a verified S3 copy). "
        "Prints the plan and changes nothing unless --execute is given."
    )
    action = Batch.Action.REPLACE
