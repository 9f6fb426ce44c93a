"""The spool's drainer as a Lambda on the spool queue (an SQS event source mapping made by `chalice deploy`)."""

from __future__ import annotations

from chalice import Blueprint
from chalice.app import SQSEvent

from chalicelib.dependencies import get_drainer
from pipeline.config import load

bp = Blueprint(__name__)


# Ten messages (SQS's most per receive) per invocation, published with one flush: draining an outage's
# backlog one message per invocation took minutes. If Kafka refuses, all ten return to the queue.
# The queue is named when the app is imported (as `chalice deploy` does), not from the cached configuration the
# first request reads.
@bp.on_sqs_message(queue=load().collector.spool_queue, batch_size=10)
def drain_spool(event: SQSEvent) -> None:
    get_drainer().drain([message.body for message in event])
