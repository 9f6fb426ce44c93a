"""The spool's drainer as a Lambda on the spool queue (an SQS event source mapping made by `chalice deploy`)."""

from __future__ import annotations

from chalice import Blueprint
from chalice.app import SQSEvent

from chalicelib.service import get_drainer
from chalicelib.settings import setting

bp = Blueprint(__name__)


# One batch per invocation: a batch Kafka refuses returns to the queue alone.
@bp.on_sqs_message(queue=setting("SPOOL_QUEUE"), batch_size=1)
def drain_spool(event: SQSEvent) -> None:
    drainer = get_drainer()
    for message in event:
        drainer.drain(message.body)
