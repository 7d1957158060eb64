"""Waits for a callback: a state machine's execution paused until someone says the entity is done (a shipment
shipped), failed, or cancelled (``wait_for:`` in a flow's state machine, ``.waitForTaskToken``).

    execution ──wait.register(token)──> item wait#<flow>#<wait>#<entity> {token, execution, waiting_since}
    a webhook of another flow, a poll, a cancel route ──complete / fail / cancel(entity)──> the same item
                                                        {outcome} ──SendTaskSuccess / SendTaskFailure(token)

Whoever comes second delivers: the outcome is stored first, the token too, each by one atomic update that
answers the item as it is now, so an outcome that arrives before its execution reached the wait (the shipment
webhook faster than the order's steps) is not lost: the registration finds it and completes its own token at
once. A token whose task ended already (timed out, a phase of the wait replaced it) answers ``TaskTimedOut``
or ``InvalidToken``: the outcome stays stored, for the next registration of that entity (a redrive).
Delivering twice (both sides saw both) is harmless: the second send is refused as the token is closed.

Errors a wait ends with (the state machine's Catch reads them):

* ``WaitFailed``: ``fail(...)`` said the entity failed; the Cause is ``{"reason", "message", "error_class"}``
  and the execution compensates and dead-letters with that reason;
* ``WaitCancelled``: ``cancel(...)``: the execution goes to the wait's ``on_cancel`` state, or ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from switchyard.errors import RetryableError
from switchyard.table_keys import wait_key

WAIT_FAILED = "WaitFailed"
WAIT_CANCELLED = "WaitCancelled"
# the token's task is over (completed, timed out, its execution ended): nobody waits on it any more
_ENDED = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
# an item outlives its execution by this much (the table's TTL attribute): a late webhook still finds it
KEEP_AFTER_SECONDS = 30 * 86_400
MAX_CAUSE = 32_000  # SendTaskFailure's cause is capped at 32,768 characters

Delivery = Literal["delivered", "stored", "waiting"]


class Waits:
    """The waits of one flow's state machine, in the shared table (botocore DynamoDB and Step Functions)."""

    def __init__(self, dynamodb: Any, table: str, stepfunctions: Any, flow: str, *,
                 keep_seconds: int = KEEP_AFTER_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self._db = dynamodb
        self._table = table
        self._sfn = stepfunctions
        self.flow = flow
        self._keep = keep_seconds
        self._clock = clock

    # ----------------------------------------------------------------- the waiting execution

    def register(self, wait: str, entity: str, token: str, *, execution: str, timeout_seconds: int) -> Delivery:
        """Store the token of the execution now waiting; an outcome that came first completes it at once."""
        item = self._update(wait, entity, "SET #token = :token, #execution = :execution, waiting_since = :now, "
                            "expiration = :expires",
                            {":token": {"S": token}, ":execution": {"S": execution},
                             ":expires": {"N": str(int(self._clock()) + timeout_seconds + self._keep)}})
        return self._deliver(wait, entity, item) if "outcome" in item else "waiting"

    # ----------------------------------------------------------------- whoever ends the wait

    def complete(self, wait: str, entity: str, output: Mapping[str, Any]) -> Delivery:
        """The entity is done (e.g. shipped): the waiting execution goes on with ``output`` as the wait's result."""
        return self._settle(wait, entity, {"kind": "success", "output": dict(output)})

    def fail(self, wait: str, entity: str, *, reason: str, message: str) -> Delivery:
        """The entity cannot go on: the execution compensates and dead-letters with ``reason``."""
        return self._settle(wait, entity, {"kind": "failure", "error": WAIT_FAILED,
                                           "cause": {"reason": reason, "message": message,
                                                     "error_class": "permanent"}})

    def cancel(self, wait: str, entity: str, *, reason: str = "cancelled", message: str = "") -> Delivery:
        """End the wait without a failure (an order cancelled before it shipped): the wait's ``on_cancel``."""
        return self._settle(wait, entity, {"kind": "failure", "error": WAIT_CANCELLED,
                                           "cause": {"reason": reason, "message": message or reason,
                                                     "error_class": "cancelled"}})

    def heartbeat(self, wait: str, entity: str) -> bool:
        """Tell the waiting execution the entity is still on its way (the wait's ``heartbeat_*``); False if no
        execution waits for it."""
        item = self._get(wait, entity)
        token = item.get("token", {}).get("S")
        if token is None or "outcome" in item:
            return False
        try:
            self._sfn.send_task_heartbeat(taskToken=token)
        except ClientError as exc:
            if _code(exc) in _ENDED:
                return False
            raise RetryableError(f"heartbeat of wait {wait} for {entity}: {_code(exc)}",
                                 reason="wait_callback_failed") from exc
        except BotoCoreError as exc:
            raise RetryableError(f"heartbeat of wait {wait} for {entity}", reason="wait_callback_failed") from exc
        return True

    def waiting(self, wait: str, entity: str) -> dict[str, Any] | None:
        """What is stored for the entity's wait: ``{"execution", "waiting_since", "outcome"}``, or None."""
        item = self._get(wait, entity)
        if not item:
            return None
        outcome = item.get("outcome", {}).get("S")
        since = item.get("waiting_since", {}).get("N")
        return {"execution": item.get("execution", {}).get("S"), "waiting_since": float(since) if since else None,
                "outcome": json.loads(outcome) if outcome else None}

    # ----------------------------------------------------------------- the item

    def _settle(self, wait: str, entity: str, outcome: dict[str, Any]) -> Delivery:
        item = self._update(wait, entity, "SET outcome = :outcome, outcome_at = :now, "
                            "expiration = if_not_exists(expiration, :expires)",
                            {":outcome": {"S": json.dumps(outcome, separators=(",", ":"), default=str)},
                             ":expires": {"N": str(int(self._clock()) + self._keep)}})
        return self._deliver(wait, entity, item)

    def _deliver(self, wait: str, entity: str, item: Mapping[str, Any]) -> Delivery:
        token = item.get("token", {}).get("S")
        if token is None or item.get("delivered_to", {}).get("S") == token:
            return "stored"  # no execution waits yet (or this one has its outcome): the next registration takes it
        outcome = json.loads(item["outcome"]["S"])
        try:
            if outcome["kind"] == "success":
                self._sfn.send_task_success(taskToken=token, output=json.dumps(outcome["output"], default=str))
            else:
                cause = json.dumps(outcome["cause"], default=str)[:MAX_CAUSE]
                self._sfn.send_task_failure(taskToken=token, error=outcome["error"], cause=cause)
        except ClientError as exc:
            if _code(exc) in _ENDED:
                return "stored"
            raise RetryableError(f"completing wait {wait} for {entity}: {_code(exc)}",
                                 reason="wait_callback_failed") from exc
        except BotoCoreError as exc:
            raise RetryableError(f"completing wait {wait} for {entity}", reason="wait_callback_failed") from exc
        self._update(wait, entity, "SET delivered_to = :token", {":token": {"S": token}})
        return "delivered"

    def _update(self, wait: str, entity: str, expression: str, values: dict[str, Any]) -> dict[str, Any]:
        names = {name: name[1:] for name in ("#token", "#execution") if name in expression}
        try:
            answer = self._db.update_item(
                TableName=self._table, Key={"id": {"S": wait_key(self.flow, wait, entity)}},
                UpdateExpression=expression,
                ExpressionAttributeValues={**values, ":now": {"N": repr(self._clock())}} if ":now" in expression
                else values,
                **({"ExpressionAttributeNames": names} if names else {}),
                ReturnValues="ALL_NEW")
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"the wait {wait} of {entity} could not be stored",
                                 reason="wait_store_unavailable") from exc
        return dict(answer.get("Attributes") or {})

    def _get(self, wait: str, entity: str) -> dict[str, Any]:
        try:
            return dict(self._db.get_item(TableName=self._table, Key={"id": {"S": wait_key(self.flow, wait, entity)}},
                                          ConsistentRead=True).get("Item") or {})
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"the wait {wait} of {entity} could not be read",
                                 reason="wait_store_unavailable") from exc


def _code(exc: ClientError) -> str:
    return str((exc.response.get("Error") or {}).get("Code", ""))
