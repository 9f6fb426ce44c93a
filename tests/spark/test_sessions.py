"""Sessions over the lake (spark/sessions.py) on a real Spark session and real Delta tables (on local disk here;
test_variant_writer.py runs them on LocalStack's S3 behind the collector): the cut at the gap, ids stable across
batches and rebuilds, late events that extend or merge sessions, and unchanged sessions left alone."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import lake_tables
import sessionize
import sessions
from maintenance import Maintenance
from pipeline.config import Config

pytestmark = pytest.mark.slow

#: The events table's columns a session is made of (types as the lake writer writes them).
TYPES = {"event_timestamp": "timestamp", "price": "double", "is_bot": "boolean"}
SCHEMA = ", ".join(f"{name} {TYPES.get(name, 'string')}" for name in sessionize.EVENT_COLUMNS)
T0 = datetime(2026, 11, 30, 23, 40, tzinfo=UTC)  # a session that crosses midnight too


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    # The JVM has the Delta jars (tests/spark/conftest.py).
    session = lake_tables.session("sessions-test", {"spark.sql.shuffle.partitions": "2"})
    session.conf.set("spark.sql.session.timeZone", "UTC")
    yield session
    session.stop()


def event(customer: str, minutes: float, number: int, **fields: Any) -> dict[str, Any]:
    moment = T0 + timedelta(minutes=minutes)
    return {
        "id": f"{customer}-{number}",
        "customer_id": customer,
        "event_timestamp": moment,
        "type": fields.pop("type", "view"),
        "price": fields.pop("price", None),
        "page": fields.pop("page", f"/page/{number}"),
        "package_id": "pytest",
        "referrer_host": None,
        "referrer_medium": fields.pop("referrer_medium", "direct"),
        **{name: None for name in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")},
        "ua_device_class": "desktop",
        "ua_browser_family": "Chrome",
        "ua_os_family": "Windows",
        "geo_country": "US",
        "is_bot": fields.pop("is_bot", False),
        "dt": moment.strftime("%Y-%m-%d"),
        **fields,
    }


@pytest.fixture(scope="module")
def empty_lake(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An events table (its change data feed on) and a sessions table, empty, as the lake writer makes them: made
    once, each test's lake is a copy (a Delta table's log names its files relative to its folder)."""
    root = tmp_path_factory.mktemp("empty-lake")
    schema = spark.createDataFrame([], SCHEMA).schema
    lake_tables.ensure_table(spark, str(root / "events"), schema)
    sessions.enable_change_feed(spark, str(root / "events"))
    empty = spark.createDataFrame([], schema)
    lake_tables.ensure_table(spark, str(root / "sessions"), sessionize.empty_sessions(empty).schema)
    return root


@pytest.fixture
def new_lake(spark: Any, empty_lake: Path, tmp_path: Path) -> Callable[..., Lake]:
    """A lake of the test's own, under its tmp_path (`name`: another of the same test)."""

    def make(name: str = "lake", gap_minutes: float = 30) -> Lake:
        shutil.copytree(empty_lake, tmp_path / name)
        return Lake(spark, tmp_path / name, gap_minutes)

    return make


class Lake:
    """An events table and a sessions table in a folder, and the updater that keeps the second from the first."""

    def __init__(self, spark: Any, root: Path, gap_minutes: float = 30) -> None:
        self.spark, self.events_path, self.sessions_path = spark, str(root / "events"), str(root / "sessions")
        self.gap_minutes = gap_minutes
        self.schema = spark.createDataFrame([], SCHEMA).schema
        self.restart()

    def restart(self) -> None:
        """A new updater, as after a restart of the lake writer: it resumes from the mark in the table."""
        config = Config.from_env({"SESSION_GAP_MINUTES": str(self.gap_minutes), "SESSIONS_INTERVAL_S": "60"})
        maintenance = Maintenance(self.spark, self.sessions_path, config.maintenance, threading.Event())
        self.updater = sessions.SessionsUpdater(
            self.spark, self.sessions_path, self.events_path, maintenance, config.sessions, threading.Event()
        )

    def batch(self, *events: dict[str, Any]) -> dict[str, Any]:
        """A commit of the lake query, then a round of the updater."""
        frame = self.spark.createDataFrame(list(events), self.schema)
        frame.write.format("delta").mode("append").save(self.events_path)
        return self.updater.update()

    def sessions(self) -> list[dict[str, Any]]:
        rows = self.spark.read.format("delta").load(self.sessions_path).orderBy("customer_id", "session_start")
        return [row.asDict() for row in rows.collect()]

    def last_commit(self) -> Any:
        return self.spark.sql(f"DESCRIBE HISTORY delta.`{self.sessions_path}` LIMIT 1").first()


def test_gaps_of_10_and_60_minutes_make_two_sessions_with_the_visit_facts(new_lake: Callable[..., Lake]) -> None:
    lake = new_lake()
    lake.batch(
        event("ann", 0, 1, page="/home?utm_source=mail", referrer_medium="email"),
        event("ann", 10, 2, type="purchase", price=19.5),
        event("ann", 20, 3, type="purchase", price=0.5, page="/thanks"),
        event("ann", 80, 4, page="/again"),  # 60 minutes after the last: a new session, across midnight
        event("bot", 5, 1, is_bot=True),
    )
    # Every session new: an append, which reads nothing of the sessions table (a MERGE would join it).
    assert lake.last_commit()["operation"] == "WRITE"
    first, second, bot = lake.sessions()
    assert (first["events"], first["landing_page"], first["exit_page"]) == (3, "/home?utm_source=mail", "/thanks")
    # PySpark hands timestamps back naive, in the session's time zone (UTC).
    start, end = T0.replace(tzinfo=None), (T0 + timedelta(minutes=20)).replace(tzinfo=None)
    assert (first["session_start"], first["session_end"], first["duration_s"]) == (start, end, 1200.0)
    assert (first["referrer_medium"], first["converted"], first["purchases"], first["revenue"]) == (
        "email",
        True,
        2,
        20.0,
    )
    assert (first["dt"], second["dt"]) == ("2026-11-30", "2026-12-01")
    assert (second["events"], second["converted"], second["revenue"], second["first_event_id"]) == (
        1,
        False,
        0,
        "ann-4",
    )
    assert (bot["is_bot"], first["is_bot"]) == (True, False)
    assert len({first["session_id"], second["session_id"], bot["session_id"]}) == 3


def test_ids_are_the_same_whatever_the_batches_and_late_events_extend_or_merge(new_lake: Callable[..., Lake]) -> None:
    events = [event("bea", minutes, n) for n, minutes in enumerate((0, 10, 50, 70, 100, 200))]
    rebuilt = new_lake("rebuilt")
    rebuilt.batch(*events)
    expected = rebuilt.sessions()
    # Gaps of 10, 40, 20, 30 and 100 minutes: 30 is not under 30, so four sessions.
    assert [s["first_event_id"] for s in expected] == ["bea-0", "bea-2", "bea-4", "bea-5"]

    incremental = new_lake("incremental")
    incremental.batch(events[0], events[2])  # 0 and 50: two sessions
    incremental.batch(events[5])  # at 200: a new session, appended
    assert incremental.last_commit()["operation"] == "WRITE"
    incremental.batch(events[4], events[3])  # 100 and 70: 70 joins 50's session, 100 a new one
    incremental.batch(events[1])  # late, at 10: extends the first session
    assert incremental.sessions() == expected

    # An event between two sessions (at 30: 20 after 10, 20 before 50) merges them into one: the later is deleted.
    incremental.batch(event("bea", 30, 9))
    merged = incremental.sessions()
    assert [s["first_event_id"] for s in merged] == ["bea-0", "bea-4", "bea-5"]
    assert (merged[0]["session_id"], merged[0]["events"]) == (expected[0]["session_id"], 5)

    # A restarted updater resumes from the mark its last commit kept: nothing new, nothing done.
    incremental.restart()
    assert incremental.updater.update() == {"customers": 0}
    # An event 29 minutes after the first session's end (0-70) and 1 minute before 100's: the first session grows;
    # the one at 100, now 29 minutes after it, joins; the one at 200 is left alone.
    figures = incremental.batch(event("bea", 71, 10))
    assert figures["customers"] == 1
    metrics = incremental.last_commit()["operationMetrics"]
    assert (metrics["numTargetRowsUpdated"], metrics["numTargetRowsDeleted"], metrics["numTargetRowsInserted"]) == (
        "1",
        "1",
        "0",
    )
    assert [(s["first_event_id"], s["events"]) for s in incremental.sessions()] == [("bea-0", 7), ("bea-5", 1)]


def test_the_gap_is_configurable(new_lake: Callable[..., Lake]) -> None:
    lake = new_lake(gap_minutes=5)
    lake.batch(*[event("cy", minutes, n) for n, minutes in enumerate((0, 4, 10))])
    assert [s["events"] for s in lake.sessions()] == [2, 1]


def test_a_client_clock_years_off_makes_a_session_of_its_own(new_lake: Callable[..., Lake]) -> None:
    """A window from year 1000 to now: the events are read by day ranges, not day by day."""
    lake = new_lake()
    ancient = (datetime(1000, 1, 1, tzinfo=UTC) - T0).total_seconds() / 60
    lake.batch(event("dee", ancient, 1), event("dee", 0, 2))
    lake.batch(event("dee", ancient + 5, 3))
    assert [(s["dt"], s["events"]) for s in lake.sessions()] == [("1000-01-01", 2), ("2026-11-30", 1)]


def test_an_event_at_a_stored_sessions_end_and_a_deleted_row_are_cut_from_the_events(
    new_lake: Callable[..., Lake],
) -> None:
    """Two cases a stored session cannot answer from its columns: which of two events at its last moment is last
    (by id), and a row deleted from the events table (a sweep's later copy, `make forget`)."""
    lake = new_lake()
    lake.batch(event("hal", 0, 1, page="/a"), event("hal", 10, 5, page="/b"))
    lake.batch(event("hal", 10, 3, page="/c"))  # at the session's end, its id before hal-5's: hal-5 stays the exit
    assert [(s["events"], s["landing_page"], s["exit_page"]) for s in lake.sessions()] == [(3, "/a", "/b")]
    lake.spark.sql(f"DELETE FROM delta.`{lake.events_path}` WHERE id = 'hal-1'")
    lake.updater.update()
    # The session now starts at 10 with hal-3 (before hal-5 by id): a new first event, so a new id.
    (session,) = lake.sessions()
    assert (session["events"], session["first_event_id"], session["landing_page"], session["exit_page"]) == (
        2,
        "hal-3",
        "/c",
        "/b",
    )
