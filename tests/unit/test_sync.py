"""PairSync (switchyard.sync) with two in-memory sides: the per-field rules, independent of any system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from switchyard.echoes import InMemoryEchoLedger
from switchyard.errors import OutOfOrderError
from switchyard.sync import InMemoryPairStore, PairSpec, PairSync, SyncField

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Side:
    """An object in a system whose clock the test sets: every write is stamped with ``now``."""

    def __init__(self, system: str, values: dict[str, Any]) -> None:
        self.system, self.values, self.now = system, dict(values), T0
        self.changed_at: datetime | None = T0
        self.writes: list[dict[str, Any]] = []

    def read(self) -> dict[str, Any]:
        return dict(self.values)

    def write(self, values: dict[str, Any]) -> datetime | None:
        self.values.update(values)
        self.writes.append(dict(values))
        self.changed_at = self.now
        return self.now

    def person_sets(self, at: datetime, **values: Any) -> None:
        self.values.update(values)
        self.changed_at = at


@pytest.fixture
def pair() -> tuple[PairSync, dict[str, Side]]:
    spec = PairSpec(name="a+b:thing", sides=("a", "b"), tie_winner="a",
                    fields=(SyncField("name"), SyncField("phone", master="a"),
                            SyncField("stage", lifecycle=("new", "open", "done"))))
    sync = PairSync(spec, InMemoryPairStore(), InMemoryEchoLedger(clock=lambda: T0.timestamp()),
                    clock=lambda: (T0 + timedelta(hours=1)).timestamp())
    sides = {"a": Side("a", {"name": "Jo", "phone": "1", "stage": "new"}),
             "b": Side("b", {"name": "Jo", "phone": "1", "stage": "new"})}
    sync.seed("k", "a", sides["a"].read(), T0, {"b": sides["b"].read()}, {"a": T0, "b": T0})
    return sync, sides


def test_receive_two_writes_in_one_millisecond_both_echoes_recognised_in_either_order(pair) -> None:
    sync, sides = pair
    at = T0 + timedelta(seconds=1)
    sides["b"].now = at + timedelta(seconds=1)  # both of Switchyard's writes to b land in the same millisecond
    sides["a"].person_sets(at, stage="open")
    sync.receive("k", "a", {"stage": "open"}, at, sides)
    sides["a"].person_sets(at + timedelta(milliseconds=1), stage="done")
    sync.receive("k", "a", {"stage": "done"}, at + timedelta(milliseconds=1), sides)
    assert sides["b"].writes == [{"stage": "open"}, {"stage": "done"}]

    # b's webhooks for the two writes carry the same change time; the later one arrives first
    echo_time = at + timedelta(seconds=1)
    assert sync.receive("k", "b", {"stage": "done"}, echo_time, sides).outcome == "echo"
    assert sync.receive("k", "b", {"stage": "open"}, echo_time, sides).outcome == "echo"
    assert sides["a"].values["stage"] == sides["b"].values["stage"] == "done"


def test_receive_equal_times_one_change_per_side_lifecycle_then_tie_winner(pair) -> None:
    sync, sides = pair
    at = T0 + timedelta(seconds=5)
    sides["a"].person_sets(at, stage="open", name="Ann")
    sides["b"].person_sets(at, stage="done", name="Bea")

    sync.receive("k", "a", {"stage": "open", "name": "Ann"}, at, sides)
    result = sync.receive("k", "b", {"stage": "done", "name": "Bea"}, at, sides)

    assert result.fields == {"stage": "applied", "name": "superseded"}
    assert sides["a"].values == sides["b"].values == {"name": "Ann", "phone": "1", "stage": "done"}


def test_receive_non_master_edit_written_back_and_reported(pair) -> None:
    sync, sides = pair
    at = T0 + timedelta(minutes=5)
    sides["b"].person_sets(at, phone="9")

    result = sync.receive("k", "b", {"phone": "9"}, at, sides)

    assert (result.outcome, result.writes) == ("not_master", {"b": ["phone"]})
    assert sides["b"].values["phone"] == "1"


def test_receive_side_changed_unheard_recently_waits_then_writes(pair) -> None:
    sync, sides = pair
    at = T0 + timedelta(minutes=59, seconds=50)  # ten seconds before the engine's clock
    sides["b"].person_sets(at, stage="open")  # its webhook has not arrived
    sides["a"].person_sets(at, name="Ann")

    with pytest.raises(OutOfOrderError) as caught:
        sync.receive("k", "a", {"name": "Ann"}, at, sides)

    assert caught.value.reason == "side_changed_meanwhile"
    assert sides["b"].writes == []


def test_receive_field_times_an_untouched_field_dated_before_what_was_seen_is_unchanged_not_stale(pair) -> None:
    # a pair recorded before its side gave per-field times: what was seen is dated by the event (T0)
    sync, sides = pair
    at = T0 + timedelta(minutes=5)
    sides["a"].person_sets(at, phone="2")
    long_ago = T0 - timedelta(days=30)

    result = sync.receive("k", "a", {"name": "Jo", "phone": "2", "stage": "new"}, at, sides,
                          field_times={"name": long_ago, "phone": at, "stage": long_ago})

    assert result.fields == {"name": "unchanged", "phone": "applied", "stage": "unchanged"}
    assert sides["b"].values["phone"] == "2"


def test_receive_field_times_date_a_field_the_event_did_not_change_by_its_own_change(pair) -> None:
    sync, sides = pair
    # a changes the name at +1 min (its event is late), b changes it at +2 min (late too), a the stage at +3 min
    sides["a"].person_sets(T0 + timedelta(minutes=1), name="Ann")
    sides["b"].person_sets(T0 + timedelta(minutes=2), name="Bea")
    sides["a"].person_sets(T0 + timedelta(minutes=3), stage="open")

    sync.receive("k", "a", {"name": "Ann", "phone": "1", "stage": "open"}, T0 + timedelta(minutes=3), sides,
                 field_times={"name": T0 + timedelta(minutes=1), "stage": T0 + timedelta(minutes=3)})
    result = sync.receive("k", "b", {"name": "Bea", "phone": "1", "stage": "new"}, T0 + timedelta(minutes=2), sides)

    assert result.fields["name"] == "applied"  # b's name is the later change
    assert sides["a"].values["name"] == sides["b"].values["name"] == "Bea"
