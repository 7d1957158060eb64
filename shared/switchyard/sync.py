"""Two-way sync that converges: one record per synced pair of objects, decided field by field.

A *pair* is one object in each of two systems that mirror each other (an order and its deal, a
customer and its contact). Both directions' workers share one record per pair, holding per field:

- ``value``/``time``/``side``: the value both sides should hold, the change time of the change that
  set it and the side it was made on (the latest change wins, across both systems);
- ``seen[side]``: the last value and change time reported by each side (events, write answers), and
  the side's own exact value when the pair's value is coarser (a shop's ``shipped`` and ``processing``
  are both the stage "Processing"): a change between two such values is still a person's change;
- ``writes[side]``: Switchyard's own writes not yet seen coming back (value, change time the system
  answered or ``None`` when the answer was lost, expiry of a write without a known time);
- ``shown[side]``: a value a read showed that side holding before any event reported it, and the latest
  time it can have been set (the object's change time then): a later event showing it is dated no later.

A change is dated by the side's own time for that field when it gives one (``field_times``), else by
the event's object change time, or the ``shown`` bound when earlier.

An inbound change from one side is judged per field: Switchyard's own write coming back (an *echo*:
matched against ``writes`` by value and change time, or by the short-lived ledger) only advances
``seen``; a value older than what that side already reported is ``stale``; a field owned by the
other side (``master``) is ``not_master``; otherwise the change wins when it is newer than the
pair's current change, and at an equal time a deterministic tie-break decides (two changes of one
side: the one that side still holds; one change per side: a lifecycle order for the field, else the
pair's ``tie_winner`` side); the loser is ``superseded``. Then both sides are reconciled:
every side whose value differs from the pair's is written, unless that side has a change of its
own Switchyard has not heard of yet (its event will decide). Generic over systems: a ``PairSide``
reads and writes one object in the pair's common field values, whatever the system.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.echoes import EchoLedger
from switchyard.errors import OutOfOrderError, RetryableError
from switchyard.table_keys import TableKeys

RETENTION_SECONDS = 400 * 24 * 3600  # a pair lives as long as its objects do; refreshed on every change
MAX_WRITES_KEPT = 8  # per side and field: Switchyard's writes whose echo has not come back yet
SAVE_ATTEMPTS = 6
AMBIGUOUS_WRITE_FAILURES = frozenset({"target_timeout"})  # the write may have been carried out anyway


def stamp(moment: datetime) -> str:
    """Fixed-width UTC: compares in time order as a string (in memory and in DynamoDB)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class SyncField:
    name: str
    master: str | None = None  # the side whose value always ends on both sides; None: the latest change wins
    lifecycle: tuple[Any, ...] = ()  # at equal change times, the value later in this order wins


@dataclass(frozen=True)
class PairSpec:
    name: str  # the records' namespace, e.g. ``shop+crm:customer``
    sides: tuple[str, str]
    fields: tuple[SyncField, ...]
    tie_winner: str  # at equal change times (no lifecycle order), this side's change wins
    echo_window_seconds: int = 600  # a write whose answer was lost is recognised by value this long
    # a side changed this recently by a change Switchyard has not heard of is not overwritten yet: the
    # event waits (out of order) for that change's webhook, which may undo what a write would assume
    settle_seconds: int = 60

    def field(self, name: str) -> SyncField | None:
        return next((f for f in self.fields if f.name == name), None)


class PairSide(Protocol):
    """One system's object of a pair, in the pair's common field values. A side whose own values are finer
    than the common ones also keeps ``exact``: its own values as last read or written."""

    system: str

    def read(self) -> dict[str, Any]:
        """The object's values now; the side also keeps ``changed_at``, the object's own change time."""
        ...

    def write(self, values: dict[str, Any]) -> datetime | None:
        """Carry out the change; the change time the system gave it, when it says (else None)."""
        ...


class PairStore(Protocol):
    def load(self, pair: str, key: str) -> tuple[dict[str, Any], int]: ...
    def save(self, pair: str, key: str, record: dict[str, Any], version: int) -> bool:
        """Store the record if it is still at ``version`` (then it becomes ``version + 1``)."""
        ...


@dataclass
class SyncResult:
    outcome: str  # updated | echo | unchanged | stale | not_master | superseded
    fields: dict[str, str] = field(default_factory=dict)  # field -> its decision
    writes: dict[str, list[str]] = field(default_factory=dict)  # side -> fields written

    def detail(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "writes": {s: sorted(f) for s, f in self.writes.items() if f}}


# the event's outcome, from its fields' decisions, in this precedence
_OUTCOME_ORDER = ("applied", "not_master", "stale", "superseded", "echo")


def _outcome(decisions: Mapping[str, str]) -> str:
    for decision in _OUTCOME_ORDER:
        if decision in decisions.values():
            return "updated" if decision == "applied" else decision
    return "unchanged"


class PairSync:
    def __init__(self, spec: PairSpec, store: PairStore, ledger: EchoLedger, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self.writes_made: dict[str, int] = {}  # side -> writes this process made (carried out or not)

    # --- the pair's object keys in each system ----------------------------------------------------

    def keys(self, key: str) -> dict[str, str]:
        record, _ = self._store.load(self.spec.name, key)
        return dict(record.get("keys") or {})

    def link(self, key: str, side: str, object_key: str) -> None:
        self._update(key, lambda record: record.setdefault("keys", {}).__setitem__(side, object_key))

    # --- a side reported its object ---------------------------------------------------------------

    def receive(self, key: str, side: str, values: Mapping[str, Any], changed_at: datetime,
                sides: Mapping[str, PairSide], exact: Mapping[str, Any] | None = None,
                changed: frozenset[str] = frozenset(),
                field_times: Mapping[str, datetime] | None = None) -> SyncResult:
        """Judge one side's report (an event) field by field, then make both sides hold the pair's values.
        ``exact``: the side's own values where they are finer than the common ones; ``changed``: fields the
        event says were changed (a stage-change webhook), even if the value looks like the last one seen
        (a change and its undoing whose webhook is still on its way); ``field_times``: when the side says
        when each field last changed (earlier than ``changed_at`` for a field the event did not change)."""
        at = stamp(changed_at)
        for _attempt in range(SAVE_ATTEMPTS):
            record, version = self._store.load(self.spec.name, key)
            record = copy.deepcopy(record)
            _heard(record, side, at)  # the event shows that side's object as of its change time
            fields = record.setdefault("fields", {})
            decisions = {}
            holds = _Reader(sides)  # what each side holds now, read once when needed
            for name, value in values.items():
                spec_field = self.spec.field(name)
                if spec_field is None:
                    continue
                state = fields.setdefault(name, {"seen": {}, "writes": {}})
                field_at = _field_time(at, (field_times or {}).get(name))
                decisions[name] = self._judge(key, spec_field, state, side, value, field_at, holds,
                                              (exact or {}).get(name), name in changed, untouched=field_at < at)
            applied = {name for name, decision in decisions.items() if decision == "applied"}
            deferred: set[str] = set()
            plan = self._reconcile(key, record, holds, applied, deferred)
            if self._store.save(self.spec.name, key, record, version):
                break
        else:
            raise RetryableError(f"pair {self.spec.name} {key} changed concurrently {SAVE_ATTEMPTS} times",
                                 reason="pair_contended")
        for name, decision in decisions.items():
            written = any(name in changes for changes in plan.values())
            if decision == "applied" and not written and name not in deferred:
                decisions[name] = "unchanged"  # a change both sides held already: nothing happened
            elif decision == "unchanged" and written:
                decisions[name] = "applied"  # carried across now (e.g. a retry after a failed write)
        result = SyncResult(_outcome(decisions), decisions)
        planned = list(plan.items())
        for done, (target, changes) in enumerate(planned):
            try:
                self._write(key, target, changes, sides[target])
            except BaseException:
                for other, other_changes in planned[done + 1:]:  # never attempted: nothing will come back
                    self._forget_writes(key, other, other_changes)
                raise
            result.writes[target] = sorted(changes)
        return result

    def seed(self, key: str, side: str, values: Mapping[str, Any], changed_at: datetime,
             written: Mapping[str, Mapping[str, Any]], versions: Mapping[str, datetime | None] | None = None) -> None:
        """A pair begins (e.g. a deal created from an order): ``side`` made ``values`` at ``changed_at``
        and ``written`` is what Switchyard put into each other side for them (their echoes may follow);
        ``versions``: each side's object change time after Switchyard's writes."""
        at = stamp(changed_at)

        def apply(record: dict[str, Any]) -> None:
            for which, moment in (versions or {}).items():
                if moment is not None:
                    _heard(record, which, stamp(moment))
            fields = record.setdefault("fields", {})
            for name, value in values.items():
                if self.spec.field(name) is None or value is None or name in fields:
                    continue  # a pair that exists already learns only from its events
                fields[name] = {"value": value, "time": at, "side": side, "seen": {side: [value, at]},
                                "writes": {}}
                for other, other_values in written.items():
                    if other_values.get(name) is not None:
                        fields[name]["seen"][other] = [other_values[name], at]

        self._update(key, apply)

    # --- per field ----------------------------------------------------------------------------------

    def _judge(self, key: str, spec_field: SyncField, state: dict[str, Any], side: str, value: Any,
               at: str, holds: _Reader, exact: Any = None, asserted: bool = False, untouched: bool = False) -> str:
        if value is None:  # an empty value never clears the other side
            return "unchanged"
        report = [value, at, exact]
        if self._is_echo(key, spec_field.name, state, side, value, at):
            seen = state["seen"].get(side)
            if seen is None or at > seen[1]:
                state["seen"][side] = report
            return "echo"
        if not asserted:  # (a webhook saying the field changed dates that change itself)
            at = _dated_by_read(state, side, value, at)
            report = [value, at, exact]
        seen = state["seen"].get(side)
        if seen is not None and at < seen[1]:
            if untouched and value == seen[0]:
                return "unchanged"  # the event changed other fields (its side dates this one as older)
            return "stale"  # that side has reported something newer already
        if seen is not None and value == seen[0] and (exact is None or _exact(seen) in (None, exact)) \
                and not (asserted and at > seen[1]):
            state["seen"][side] = report
            return "unchanged"  # another field of the object changed
        same_side_tie = seen is not None and at == seen[1]
        if spec_field.master is not None and side != spec_field.master:
            state["seen"][side] = report
            return "not_master"  # reconciling writes the master's value back
        current, current_at = state.get("value"), state.get("time")
        if current is None or current_at is None:
            return self._win(state, side, report)
        if value == current:
            state["seen"][side] = report
            if at > current_at:
                state.update(time=at, side=side)  # the latest change to the field, though to the same value
            return "unchanged"
        if at > current_at:
            return self._win(state, side, report)
        if at < current_at:
            state["seen"][side] = report
            return "stale"  # the pair's value comes from a newer change (reconciling puts it back here)
        if self._wins_tie(spec_field, state, side, value, holds):
            return self._win(state, side, report)
        if not same_side_tie:
            state["seen"][side] = report
        return "superseded"

    def _wins_tie(self, spec_field: SyncField, state: dict[str, Any], side: str, value: Any,
                  holds: _Reader) -> bool:
        current = state.get("value")
        if side == state.get("side"):
            # two changes of one side at one time: the one that side still holds came last; else in order of arrival
            now = holds(side).get(spec_field.name)
            return now == value or now != current
        order = spec_field.lifecycle
        if value in order and current in order and order.index(value) != order.index(current):
            return order.index(value) > order.index(current)
        return side == self.spec.tie_winner

    @staticmethod
    def _win(state: dict[str, Any], side: str, report: list[Any]) -> str:
        state.update(value=report[0], time=report[1], side=side)
        state["seen"][side] = report
        return "applied"

    def _is_echo(self, key: str, name: str, state: dict[str, Any], side: str, value: Any, at: str) -> bool:
        writes = state["writes"].get(side) or []
        now = self._clock()
        match = next((i for i, (v, t, expires) in enumerate(writes)
                      if v == value and (t == at or (t is None and expires > now))), None)
        if not writes:
            return False  # nothing of Switchyard's on its way back from this side
        from_ledger = self._ledger.consume(side, self._ledger_entity(name), key, {"value": value})
        if match is not None:
            del writes[match]
            # and writes answered before this one: their echoes can only be older (an equal change time,
            # two writes in one millisecond, may still come)
            writes[:] = [w for w in writes if w[1] is None or w[1] >= at]
            return True
        # the ledger knows the write; the pair record may know it better: the same value written with
        # another known change time is not this event (a person set that value again later)
        contradicted = any(v == value and t is not None and t != at for v, t, _ in writes)
        return from_ledger and not contradicted

    def _ledger_entity(self, name: str) -> str:
        return f"{self.spec.name}.{name}"

    # --- both sides -----------------------------------------------------------------------------------

    def _reconcile(self, key: str, record: dict[str, Any], holds: _Reader, applied: set[str],
                   deferred: set[str]) -> dict[str, dict[str, Any]]:
        """What to write where so that both sides hold the pair's values; the writes are noted in the
        record (with the ledger) before they are made, so their echoes are known even if they overtake us."""
        plan: dict[str, dict[str, Any]] = {}
        now = self._clock()
        for side in self.spec.sides:
            for name, state in (record.get("fields") or {}).items():
                spec_field = self.spec.field(name)
                if spec_field is None:
                    continue
                if state.get("value") is None and spec_field.master is not None:
                    # only the other side has spoken yet: the master's value is what it holds
                    master_holds = holds(spec_field.master).get(name)
                    if master_holds is not None:
                        state.update(value=master_holds, time="", side=spec_field.master)
                        state["seen"].setdefault(spec_field.master, [master_holds, ""])
                target = state.get("value")
                if target is None:
                    continue
                writes = state["writes"].setdefault(side, [])
                writes[:] = [w for w in writes if w[1] is not None or w[2] > now][-MAX_WRITES_KEPT:]
                seen = state["seen"].get(side)
                pending = [w for w in writes if w[1] is None]
                believed = pending[-1][0] if pending else (seen[0] if seen else None)
                if believed == target:
                    continue
                held = holds(side).get(name)
                if held == target:
                    continue
                held_exact = holds.exact(side).get(name)
                if seen is not None and not pending and None not in (held_exact, _exact(seen)) \
                        and held_exact != _exact(seen):
                    deferred.add(name)
                    continue  # changed there within the same common value: that change's event decides
                if seen is None and not pending:
                    if name not in applied:
                        continue  # a side never heard of keeps its value until it reports it (or a change wins)
                    state["seen"][side] = [held, ""]  # what it held before, of unknown (old) time
                elif pending and seen is not None and held == seen[0]:
                    writes[:] = [w for w in writes if w[1] is not None]  # those writes never took effect
                elif held != believed:
                    deferred.add(name)
                    continue  # a change there Switchyard has not heard of: its event decides
                self._settled(record, side, holds, now)
                plan.setdefault(side, {})[name] = target
        _note_unheard(record, holds)
        expires = now + self.spec.echo_window_seconds
        for side, changes in plan.items():
            for name, value in changes.items():
                record["fields"][name]["writes"][side].append([value, None, expires])
                self._ledger.record(side, self._ledger_entity(name), key, {"value": value},
                                    ttl_seconds=self.spec.echo_window_seconds)
        return plan

    def _settled(self, record: dict[str, Any], side: str, holds: _Reader, now: float) -> None:
        """Raise OutOfOrderError while ``side`` shows a recent change Switchyard has not heard of (e.g. a
        person's A→B→A whose B has not arrived): writing now could undo it; that change's event decides."""
        changed = holds.changed_at(side)
        known = (record.get("versions") or {}).get(side)
        if changed is None or known is None or changed <= known:
            return
        age = now - datetime.strptime(changed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        if age < self.spec.settle_seconds:
            raise OutOfOrderError(f"{side} changed at {changed}, after the last change heard of ({known})",
                                  reason="side_changed_meanwhile")

    def _write(self, key: str, side: str, changes: dict[str, Any], target: PairSide) -> None:
        self.writes_made[side] = self.writes_made.get(side, 0) + 1
        try:
            changed_at = target.write(changes)
        except BaseException as exc:
            if getattr(exc, "reason", None) not in AMBIGUOUS_WRITE_FAILURES:
                self._forget_writes(key, side, changes)  # not carried out: nothing will come back
            raise
        if changed_at is None:
            return
        at = stamp(changed_at)
        exact = dict(getattr(target, "exact", None) or {})

        def apply(record: dict[str, Any]) -> None:
            _heard(record, side, at)
            for name, value in changes.items():
                state = record["fields"][name]
                for write in state["writes"].get(side, []):
                    if write[0] == value and write[1] is None:
                        write[1] = at
                        break
                seen = state["seen"].get(side)
                if seen is None or at >= seen[1]:  # a later write in the same millisecond is still later
                    state["seen"][side] = [value, at, exact.get(name)]

        self._update(key, apply)

    def _forget_writes(self, key: str, side: str, changes: Mapping[str, Any]) -> None:
        def apply(record: dict[str, Any]) -> None:
            for name, value in changes.items():
                writes = record["fields"][name]["writes"].get(side, [])
                for i in range(len(writes) - 1, -1, -1):
                    if writes[i][0] == value and writes[i][1] is None:
                        del writes[i]
                        break
                self._ledger.consume(side, self._ledger_entity(name), key, {"value": value})

        self._update(key, apply)

    def _update(self, key: str, apply: Callable[[dict[str, Any]], None]) -> None:
        for _attempt in range(SAVE_ATTEMPTS):
            record, version = self._store.load(self.spec.name, key)
            record = copy.deepcopy(record)
            apply(record)
            if self._store.save(self.spec.name, key, record, version):
                return
        raise RetryableError(f"pair {self.spec.name} {key} changed concurrently {SAVE_ATTEMPTS} times",
                             reason="pair_contended")


class _Reader:
    def __init__(self, sides: Mapping[str, PairSide]) -> None:
        self._sides = sides
        self._read: dict[str, dict[str, Any]] = {}
        self._exact: dict[str, dict[str, Any]] = {}

    def __call__(self, side: str) -> dict[str, Any]:
        if side not in self._read:
            self._read[side] = self._sides[side].read()
            self._exact[side] = dict(getattr(self._sides[side], "exact", None) or {})
        return self._read[side]

    def read_sides(self) -> list[str]:
        return list(self._read)

    def exact(self, side: str) -> dict[str, Any]:
        self(side)
        return self._exact[side]

    def changed_at(self, side: str) -> str | None:
        self(side)
        moment = getattr(self._sides[side], "changed_at", None)
        return stamp(moment) if isinstance(moment, datetime) else None


def _heard(record: dict[str, Any], side: str, at: str) -> None:
    """Switchyard knows ``side``'s object as of ``at`` (an event of it, or its answer to a write)."""
    versions = record.setdefault("versions", {})
    if at and (versions.get(side) is None or at > versions[side]):
        versions[side] = at


def _field_time(at: str, moment: datetime | None) -> str:
    """A field's own change time when the side gives one (never later than the object's change time)."""
    if moment is None or moment.tzinfo is None:
        return at
    return min(at, stamp(moment))


def _note_unheard(record: dict[str, Any], holds: _Reader) -> None:
    """A side read holding a value Switchyard has not heard of: the change that set it was made no later
    than the object's change time at that read. Webhooks carry the whole object, not which field changed,
    so the first later webhook showing it (e.g. the echo of Switchyard's write of another field) must not
    date it later; kept per field as ``shown[side]``: [value, latest possible change time]."""
    for side in holds.read_sides():
        bound = holds.changed_at(side)
        if bound is None:
            continue
        for name, state in (record.get("fields") or {}).items():
            held, seen = holds(side).get(name), state["seen"].get(side)
            if held is None or seen is None or held == seen[0] or bound <= seen[1]:
                continue
            if any(write[0] == held for write in state["writes"].get(side) or []):
                continue  # Switchyard's own write
            shown = state.setdefault("shown", {}).get(side)
            if shown is None or shown[0] != held or bound < shown[1]:
                state["shown"][side] = [held, bound]


def _dated_by_read(state: dict[str, Any], side: str, value: Any, at: str) -> str:
    """``at``, or earlier when a read showed ``side`` holding ``value`` already (``_note_unheard``)."""
    shown = (state.get("shown") or {}).get(side)
    if shown is None:
        return at
    seen = state["seen"].get(side)
    if seen is not None and seen[1] >= shown[1]:
        del state["shown"][side]  # that side has reported since: the read tells nothing more
        return at
    return shown[1] if shown[0] == value and shown[1] < at else at


def _exact(seen: list[Any]) -> Any:
    return seen[2] if len(seen) > 2 else None


# --- stores -------------------------------------------------------------------------------------------


class InMemoryPairStore:
    """For tests, dry runs and the chaos harness; same contract as the DynamoDB store (tests/contract)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def load(self, pair: str, key: str) -> tuple[dict[str, Any], int]:
        with self._lock:
            text, version = self._items.get((pair, key), ("{}", 0))
        return json.loads(text), version

    def save(self, pair: str, key: str, record: dict[str, Any], version: int) -> bool:
        with self._lock:
            if self._items.get((pair, key), ("{}", 0))[1] != version:
                return False
            self._items[(pair, key)] = (json.dumps(record, default=str), version + 1)
            return True

    def records(self, pair: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: json.loads(text) for (p, key), (text, _) in self._items.items() if p == pair}


class DynamoPairStore:
    """Items ``state#<pair scope>#pair#<pair>#<key>`` in the idempotency table (``switchyard.table_keys``,
    so both directions' workers reach them): the record as JSON, a version for optimistic concurrency (both
    directions write it), refreshed TTL."""

    def __init__(self, client: Any, table: str, *, keys: TableKeys, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._keys = keys
        self._clock = clock

    def _key(self, pair: str, key: str) -> dict[str, Any]:
        return {"id": {"S": self._keys.state("pair", pair, key)}}

    def load(self, pair: str, key: str) -> tuple[dict[str, Any], int]:
        item = self._client.get_item(TableName=self._table, Key=self._key(pair, key),
                                     ConsistentRead=True).get("Item")
        if not item:
            return {}, 0
        return json.loads(item["record"]["S"]), int(item["version"]["N"])

    def save(self, pair: str, key: str, record: dict[str, Any], version: int) -> bool:
        condition = "attribute_not_exists(id)" if version == 0 else "version = :v"
        values = {":v": {"N": str(version)}} if version else {}
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**self._key(pair, key), "record": {"S": json.dumps(record, default=str)},
                      "version": {"N": str(version + 1)},
                      "expiration": {"N": str(int(self._clock()) + RETENTION_SECONDS)}},
                ConditionExpression=condition, **({"ExpressionAttributeValues": values} if values else {}),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True
