"""The local stack enforces the table's IAM grants, which moto does not: each function's DynamoDB calls on
the shared table are checked against the statements its role has in the synthesized template.

A call that IAM would refuse gets the ``AccessDeniedException`` AWS would answer, and is recorded in
:attr:`TableAccessCheck.denied` (code may swallow the error, as the token lease's release does), so an end
to end run proves that every key the library really builds is one its function is granted.

Evaluated: Allow/Deny statements naming the table by its ``Arn`` (or ``*``), actions with wildcards, and the
conditions the grants use: ``ForAllValues:StringLike`` / ``ForAllValues:StringEquals`` on
``dynamodb:LeadingKeys`` and ``Null``. A statement with any other condition is not trusted to allow.
"""

from __future__ import annotations

import contextvars
import fnmatch
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.handlers import BUILTIN_HANDLERS

LEADING_KEYS = "dynamodb:LeadingKeys"
_DENIED = "switchyard_table_access_denied"
# the logical id of the function whose code is running (a context variable: it follows the function's work
# into the threads it hands calls to, through switchyard.concurrency)
_calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("switchyard_calling_function", default=None)


@contextmanager
def acting_as(function_logical_id: str) -> Iterator[None]:
    """Calls made on this thread inside the block are the function's (its role's grants apply)."""
    token = _calling.set(function_logical_id)
    try:
        yield
    finally:
        _calling.reset(token)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))  # IAM: * and ? only


@dataclass(frozen=True)
class Denial:
    function: str
    action: str
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.function} may not {self.action} {list(self.keys) or '(no key)'}"


@dataclass
class TableAccessCheck:
    table_name: str
    partition_key: str
    statements: dict[str, list[dict[str, Any]]]  # function logical id -> its role's statements on the table
    denied: list[Denial] = field(default_factory=list)
    allowed: Counter[str] = field(default_factory=Counter)  # function logical id -> calls IAM would allow

    @classmethod
    def from_template(cls, template: dict[str, Any], physical: dict[str, str]) -> TableAccessCheck:
        resources = template["Resources"]
        (table_id,) = [lid for lid, r in resources.items()
                       if (r.get("Metadata") or {}).get("switchyard:role") == "idempotency-table"]
        (key,) = [k["AttributeName"] for k in resources[table_id]["Properties"]["KeySchema"] if k["KeyType"] == "HASH"]
        table_arn = {"Fn::GetAtt": [table_id, "Arn"]}
        by_role: dict[str, list[dict[str, Any]]] = {}
        for policy in resources.values():
            if policy["Type"] != "AWS::IAM::Policy":
                continue
            on_table = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                        if any(r == table_arn or r == "*" for r in _list(s["Resource"]))]
            for role in policy["Properties"].get("Roles", []):
                by_role.setdefault(role.get("Ref", ""), []).extend(on_table)
        statements = {}
        for lid, resource in resources.items():
            if resource["Type"] == "AWS::Lambda::Function":
                role = resource["Properties"]["Role"].get("Fn::GetAtt", [""])[0]
                statements[lid] = by_role.get(role, [])
        return cls(table_name=physical[table_id], partition_key=key, statements=statements)

    # --- evaluation ----------------------------------------------------------------------------

    def leading_keys(self, operation: str, params: dict[str, Any]) -> list[str]:
        """The partition key values a request touches in this table (empty for Scan and the like)."""
        keys: list[dict[str, Any]] = []
        if operation in ("GetItem", "DeleteItem", "UpdateItem"):
            keys.append(params.get("Key", {}))
        elif operation == "PutItem":
            keys.append(params.get("Item", {}))
        elif operation in ("BatchGetItem", "BatchWriteItem"):
            for request in _list(params.get("RequestItems", {}).get(self.table_name, [])):
                if operation == "BatchGetItem":
                    keys.extend(request.get("Keys", []))
                else:
                    keys.append((request.get("PutRequest") or {}).get("Item")
                                or (request.get("DeleteRequest") or {}).get("Key") or {})
        elif operation in ("TransactWriteItems", "TransactGetItems"):
            for item in params.get("TransactItems", []):
                for part in item.values():
                    if part.get("TableName") == self.table_name:
                        keys.append(part.get("Key") or part.get("Item") or {})
        return [str(next(iter(k[self.partition_key].values()))) for k in keys if self.partition_key in k]

    def _applies(self, statement: dict[str, Any], action: str, keys: list[str]) -> bool:
        if not any(_like(action.lower(), a.lower()) for a in _list(statement["Action"])):
            return False
        for operator, tests in statement.get("Condition", {}).items():
            for condition_key, expected in tests.items():
                if condition_key != LEADING_KEYS:
                    return False
                patterns = [str(p) for p in _list(expected)]
                if operator == "Null":
                    if (not keys) != (patterns == ["true"]):
                        return False
                elif operator == "ForAllValues:StringLike":
                    if not all(any(_like(k, p) for p in patterns) for k in keys):
                        return False
                elif operator == "ForAllValues:StringEquals":
                    if not all(k in patterns for k in keys):
                        return False
                else:
                    return False
        return True

    def denial(self, function: str, operation: str, params: dict[str, Any]) -> Denial | None:
        if params.get("TableName") != self.table_name and operation not in (
                "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems"):
            return None
        action = f"dynamodb:{operation}"
        keys = self.leading_keys(operation, params)
        statements = [s for s in self.statements.get(function, []) if self._applies(s, action, keys)]
        if statements and not any(s["Effect"] == "Deny" for s in statements):
            self.allowed[function] += 1
            return None
        refused = Denial(function, action, tuple(keys))
        self.denied.append(refused)
        return refused

    # --- botocore hooks --------------------------------------------------------------------------

    def activate(self) -> TableAccessCheck:
        global _active
        _active = self
        return self

    def deactivate(self) -> None:
        global _active
        if _active is self:
            _active = None


_active: TableAccessCheck | None = None


def _check(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    function = _calling.get()
    if _active is None or function is None:
        return  # test code and tools act with the operator's (unrestricted) credentials
    refused = _active.denial(function, model.name, params)
    if refused is not None:
        context[_DENIED] = str(refused)


def _deny(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
    message = context.get(_DENIED)
    if message is None:
        return None
    response = AWSResponse(url="", status_code=400, headers={}, raw=None)
    return response, {"Error": {"Code": "AccessDeniedException", "Message": f"not authorized: {message}"},
                      "ResponseMetadata": {"HTTPStatusCode": 400}}


# Every botocore session created from now on (the functions' own, Powertools' boto3 one) gets the check.
BUILTIN_HANDLERS.extend([("before-parameter-build.dynamodb", _check), ("before-call.dynamodb", _deny)])
