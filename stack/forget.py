"""`make forget CUSTOMER=<id>`: a customer forgotten, as a shop owes it to a person who asks (GDPR's erasure).

1. The customer goes on the list, the compacted KAFKA_FORGOTTEN_TOPIC (by hash: the list names no one), written with
   acks=all: from then on every lake writer, a rebuild from the topics after a LocalStack restart included, drops
   their events, late or resent, and counts them (spark/forgetting.py).
2. Their rows are deleted from the events, invalid (by the event in the payload) and sessions tables: by the running
   lake writer, between two of a table's writes, else by a Spark application of its own.
3. The files that held them go at the vacuum LAKE_VACUUM_RETAIN_HOURS later (time travel reaches no further).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.config import Config
from pipeline.contract import customer_hash
from stack import spark
from stack.cluster import current


def remember(config: Config, customers: list[str]) -> None:
    """The customers on the list of the forgotten, once every in-sync replica has it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=config.kafka.servers, acks="all", client_id="clickstream-forget")
    try:
        value = json.dumps({"forgotten_at": datetime.now(UTC).isoformat(timespec="seconds")}).encode()
        sent = [
            producer.send(config.kafka.forgotten_topic, key=customer_hash(customer).encode(), value=value)
            for customer in customers
        ]
        for record in sent:
            record.get(timeout=30)  # raises what Kafka answered, if not the write
    finally:
        producer.close()


def forget(customers: list[str], config: Config | None = None, name: str = "spark", timeout_s: float = 900) -> str:
    """Forget `customers` (their ids): listed, then their rows deleted from every table. Says what it did."""
    config = config or current()
    if not customers or not all(c.strip() for c in customers):
        raise ValueError("forget: name the customer (make forget CUSTOMER=<id>)")
    remember(config, customers)
    if spark.service(name).pid() is None:
        spark.run_maintenance(config, "forget", ",".join(customers))
        return f"forget: {len(customers)} customer(s) listed; their rows deleted by a Spark application of its own"
    answers = spark.ask_tables(config, {"forget": customers}, timeout_s, name)
    deleted = ", ".join(f"{table} {answer.get('rows_deleted', 0)}" for table, answer in answers.items())
    return f"forget: {len(customers)} customer(s) listed; rows deleted by the lake writer: {deleted}"
