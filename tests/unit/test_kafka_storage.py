"""The embedded broker's storage is formatted with a cluster id Kafka's storage tool accepts."""

from __future__ import annotations

from stack.kafka import _cluster_id


def test_cluster_ids_never_look_like_options() -> None:
    ids = [_cluster_id() for _ in range(5000)]  # about 78 of 5000 random ids would start with "-"
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
