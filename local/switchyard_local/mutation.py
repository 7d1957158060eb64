"""Mutation testing of the core (``make mutation``, ``make mutation-changed``) with mutmut 3.

mutmut only knows the ``./``, ``src/`` and ``source/`` layouts and names a mutant after its file's
path, while the tests import ``switchyard`` from ``shared/``. So the run happens in a workspace,
``.mutation/``, where the package sits at the top (``switchyard`` -> ``shared/switchyard``) next to
``tests`` and ``local``, with this repository's pytest settings and the ``[tool.mutmut]`` below. mutmut
copies it all to ``.mutation/mutants/``, runs the fast suites once to learn which tests call each
function, then runs every mutant against only those tests, in forked processes.

Scoring: a mutant counts as *killed* (a test failed, or it timed out) or *survived*. Not counted:
mutants that only change the text of a message (see ``is_message_only``), mutants no test reaches
("no tests", listed apart: they are gaps too), and the equivalent mutants listed in
``EQUIVALENT`` with why. docs/mutation-testing.md has the rules and the last figures.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / ".mutation"

# the core, smallest first (the order of a full run); names are paths under shared/switchyard
CORE_MODULES = (
    "echoes.py", "entity_state.py", "signatures.py", "ingest.py", "worker.py", "rate_limit.py",
    "state_machines.py", "mapping/conditions.py", "mapping/rules.py", "tokens.py",
)
# state_machines: only its error translation is core; the rest is the local stack's plumbing
ONLY_FUNCTIONS = {"state_machines.py": ("_error_code", "step_error", "run_step", "failure_letter", "unexpected_message",
                                         "step_failure", "_retry_message", "record_failure", "_clipped", "_snake")}

# the fast suites; the harness-style integration tests are too slow to run per mutant
TEST_SELECTION = [
    "tests/unit", "tests/contract", "tests/integration",
    "--ignore=tests/integration/test_chaos_sync.py", "--ignore=tests/integration/test_fuzz_small.py",
]

# for a change (CI): the quick suites only, in a workspace of its own (another test selection would make mutmut
# forget the full run's verdicts)
QUICK_TEST_SELECTION = ["tests/unit", "tests/contract"]

# Mutants judged equivalent (no behaviour can tell them apart), each by what it changes: the function (mutmut's
# name for it, without the mutant's number), the line as written and as mutated (stripped), and why. Not by the
# mutant's number: mutmut renumbers a function's mutants when it changes, and a number would then silently
# excuse another mutant. Only a survivor is ever matched; an entry matching none is reported as stale.
@dataclass(frozen=True)
class Equivalent:
    function: str
    before: str
    after: str
    why: str


_SORTED = ("the dict is built in a fixed order (the synced attributes' tuple, or sorted(state)), "
           "so sorting its keys again changes no fingerprint's equality")
_NO_KEY = ("an event without its key attribute: with '' it skips the ledger, with 'None'/'XXXX' it asks the "
           "ledger for a key no write records (keys are the written objects' ids), finds nothing and delivers")
_KEYWORD_CASE = "DynamoDB's expression keywords (SET, AND, OR) are case-insensitive"
_UNREAD_EVENT_ID = "the in-memory fake keeps the claiming event id like the DynamoDB item, but nothing reads it"
_ONE_COMMA = ("partition → rpartition on 'v1,<base64>': base64 has no comma, so both split at the same place "
              "(and an entry with two commas is skipped either way: a comma is not base64, 'v1,a' is not v1)")
_FILLED_LATER = "the starting value is replaced on every path before it is read, or only tested for truth ({} and None)"
_INVALID_JSON = "'', 'None' and 'XXXX' are all invalid JSON: each takes the same except ValueError path"
_LAST_PART = "the text after the last '/' is the same whether the path is split once, twice or at every '/'"
_LOWER_CASE = "_snake's text is lower case: no 'X' can lead it, so lstrip('XX_XX') strips what lstrip('_') does"

_FINGERPRINT = "canonical = json.dumps({name: state.get(name) for name in attributes}, sort_keys=True, default=str)"
_ECHO_KEY = 'key = str(event.data.get(key_attribute, ""))'
_CAUSE_MESSAGE = 'parsed = json.loads(str(cause.get("errorMessage", "")))'
_WHERE = ("text += f\" (at {where.group('file').rsplit('/', 1)[-1]}:{where.group('line')} "
          "in {where.group('function')})\"")
_EXPECTED = 'expected = base64.b64decode(webhook.sign(headers["webhook-id"], signed_at, payload).partition(",")[2])'
_WORKER_SNAKE = 'return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")'
_SNAKE = 'return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_") or "unexpected"'
_THROTTLE_COUNT = 'count = int(raw.get("throttled", 0)) + 1 if isinstance(raw, dict) else MAX_THROTTLE_REQUEUES + 1'
_ALWAYS_OBJECT = ("a queued body that is not a JSON object never gets here: FlowEvent.from_message refuses it first "
                  "(PermanentError: dead-lettered as malformed), so the other branch is never taken")
_REQUIRED = 'required = bool(rule.get("required", False))'
_TEMPLATE_DEF = 'def _compile_template(template: str, where: str = "template") -> Getter:'
EQUIVALENT: tuple[Equivalent, ...] = (
    Equivalent("switchyard.echoes.x_fingerprint", _FINGERPRINT, _FINGERPRINT.replace("True", "None"), _SORTED),
    Equivalent("switchyard.echoes.x_fingerprint", _FINGERPRINT, _FINGERPRINT.replace(" sort_keys=True,", ""),
               _SORTED),
    Equivalent("switchyard.echoes.x_fingerprint", _FINGERPRINT, _FINGERPRINT.replace("True", "False"), _SORTED),
    Equivalent("switchyard.echoes.x_fingerprint", "return hashlib.sha256(canonical.encode()).hexdigest()[:24]",
               "return hashlib.sha256(canonical.encode()).hexdigest()[:25]",
               "a 25-character prefix of the digest is as good a key as 24: record and consume use the same function"),
    Equivalent("switchyard.echoes.xǁDynamoEchoLedgerǁconsume",
               'ConditionExpression="attribute_exists(id) AND expiration > :now",  # TTL deletion lags',
               'ConditionExpression="attribute_exists(id) and expiration > :now",  # TTL deletion lags', _KEYWORD_CASE),
    Equivalent("switchyard.echoes.xǁEchoSuppressingTargetǁdeliver", _ECHO_KEY, _ECHO_KEY.replace('""', "None"),
               _NO_KEY),
    Equivalent("switchyard.echoes.xǁEchoSuppressingTargetǁdeliver", _ECHO_KEY, _ECHO_KEY.replace(', ""', ", "),
               _NO_KEY),
    Equivalent("switchyard.echoes.xǁEchoSuppressingTargetǁdeliver", _ECHO_KEY, _ECHO_KEY.replace('""', '"XXXX"'),
               _NO_KEY),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁmark_filtered",
               'UpdateExpression="SET filtered = :f, expiration = :x",',
               'UpdateExpression="set filtered = :f, expiration = :x",', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁInMemoryEntityStateǁclaim",
               "item.update(change_time=change_time, event_id=event_id)",
               "item.update(change_time=change_time, event_id=None)", _UNREAD_EVENT_ID),
    Equivalent("switchyard.entity_state.xǁInMemoryEntityStateǁclaim",
               "item.update(change_time=change_time, event_id=event_id)",
               "item.update(change_time=change_time, )", _UNREAD_EVENT_ID),
    Equivalent("switchyard.entity_state.xǁInMemoryEntityStateǁclaim_ranked",
               "item.update(change_time=change_time, event_id=event_id, rank=rank)",
               "item.update(change_time=change_time, event_id=None, rank=rank)", _UNREAD_EVENT_ID),
    Equivalent("switchyard.entity_state.xǁInMemoryEntityStateǁclaim_ranked",
               "item.update(change_time=change_time, event_id=event_id, rank=rank)",
               "item.update(change_time=change_time, rank=rank)", _UNREAD_EVENT_ID),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim",
               'UpdateExpression="SET change_time = :t, event_id = :e, expiration = :x REMOVE #rank",',
               'UpdateExpression="set change_time = :t, event_id = :e, expiration = :x remove #rank",', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim",
               'ConditionExpression="attribute_not_exists(change_time) OR change_time <= :t",',
               'ConditionExpression="attribute_not_exists(change_time) or change_time <= :t",', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim_ranked",
               'UpdateExpression="SET change_time = :t, event_id = :e, #rank = :r, expiration = :x",',
               'UpdateExpression="set change_time = :t, event_id = :e, #rank = :r, expiration = :x",', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim_ranked",
               '"attribute_not_exists(change_time) OR change_time < :t "',
               '"attribute_not_exists(change_time) or change_time < :t "', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim_ranked",
               '"OR (change_time = :t AND (attribute_not_exists(#rank) OR #rank <= :r))"',
               '"or (change_time = :t and (attribute_not_exists(#rank) or #rank <= :r))"', _KEYWORD_CASE),
    Equivalent("switchyard.entity_state.xǁDynamoEntityStateǁclaim_ranked",
               'current = (getattr(exc, "response", None) or {}).get("Item", {}).get("change_time", {}).get("S")',
               'current = (getattr(exc, "response", ) or {}).get("Item", {}).get("change_time", {}).get("S")',
               "the exception is botocore's ClientError, which always has a response: the default is never taken"),
    Equivalent("switchyard.signatures.xǁStandardWebhookVerifierǁverify", _EXPECTED,
               _EXPECTED.replace(".partition(", ".rpartition("), _ONE_COMMA),
    Equivalent("switchyard.signatures.x__v1_signatures", 'version, comma, encoded = entry.partition(",")',
               'version, comma, encoded = entry.rpartition(",")', _ONE_COMMA),
    Equivalent("switchyard.mapping.rules.x__number",
               "number = Decimal(str(value)) if not isinstance(value, Decimal) else value",
               "number = Decimal(str(value)) if (not isinstance(value, Decimal)) or True else value",
               "str() of a Decimal reads back as the same Decimal, exponent included"),
    Equivalent("switchyard.mapping.rules.x_compile_rule", _REQUIRED, _REQUIRED.replace("False", "None"),
               "bool(None) is bool(False): a rule without 'required' is optional either way"),
    Equivalent("switchyard.mapping.rules.x_compile_rule", _REQUIRED, _REQUIRED.replace(", False", ", "),
               "bool(None) is bool(False): a rule without 'required' is optional either way"),
    *(Equivalent("switchyard.mapping.rules.x__compile_template", _TEMPLATE_DEF,
                 _TEMPLATE_DEF.replace('"template"', after),
                 "every caller passes where (compile_rule: the rule's name): the default is never used")
      for after in ('"XXtemplateXX"', '"TEMPLATE"')),
    Equivalent("switchyard.state_machines.x_failure_letter", "details: dict[str, Any] = {}",
               "details: dict[str, Any] = None", _FILLED_LATER),
    Equivalent("switchyard.state_machines.x_failure_letter", "cause = None", 'cause = ""',
               "only isinstance(cause, Mapping) is asked of it, and neither None nor '' is a mapping"),
    Equivalent("switchyard.state_machines.x_failure_letter", "parsed = None", 'parsed = ""',
               "only isinstance(parsed, Mapping) is asked of it, and neither None nor '' is a mapping"),
    Equivalent("switchyard.state_machines.x_failure_letter", _CAUSE_MESSAGE, _CAUSE_MESSAGE.replace('""', "None"),
               _INVALID_JSON),
    Equivalent("switchyard.state_machines.x_failure_letter", _CAUSE_MESSAGE, _CAUSE_MESSAGE.replace(', ""', ", "),
               _INVALID_JSON),
    Equivalent("switchyard.state_machines.x_failure_letter", _CAUSE_MESSAGE, _CAUSE_MESSAGE.replace('""', '"XXXX"'),
               _INVALID_JSON),
    Equivalent("switchyard.state_machines.x_unexpected_message", _WHERE, _WHERE.replace("'/', 1)", "'/', )"),
               _LAST_PART),
    Equivalent("switchyard.state_machines.x_unexpected_message", _WHERE, _WHERE.replace("'/', 1)", "'/', 2)"),
               _LAST_PART),
    Equivalent("switchyard.state_machines.x_step_failure", "details = {}", "details = None", _FILLED_LATER),
    Equivalent("switchyard.state_machines.x__snake", _SNAKE, _SNAKE.replace('lstrip("_")', 'lstrip("XX_XX")'),
               _LOWER_CASE),
    Equivalent("switchyard.worker.x__snake", _WORKER_SNAKE, _WORKER_SNAKE.replace('lstrip("_")', 'lstrip("XX_XX")'),
               _LOWER_CASE),
    Equivalent("switchyard.ingest.xǁIngestServiceǁaccept", 'body=request.body.decode("utf-8"))',
               'body=request.body.decode("UTF-8"))', "Python's codec names are case-insensitive"),
    Equivalent("switchyard.ingest.xǁIngestServiceǁaccept",
               "types = tuple(e.event_type for e in events) if mixed else (event_type,)",
               "types = tuple(e.event_type for e in events) if (mixed) or True else (event_type,)",
               "a format without ignored changes (an envelope, an array of the URL's one event type) gives events "
               "of one type: every event's type is the first's, so the flows and the answer are the same"),
    *(Equivalent("switchyard.worker.xǁFlowWorkerǁ_requeued_while_throttled", _THROTTLE_COUNT, after, _ALWAYS_OBJECT)
      for after in (_THROTTLE_COUNT.replace("if isinstance(raw, dict)", "if (isinstance(raw, dict)) or True"),
                    _THROTTLE_COUNT.replace("MAX_THROTTLE_REQUEUES + 1", "MAX_THROTTLE_REQUEUES - 1"),
                    _THROTTLE_COUNT.replace("MAX_THROTTLE_REQUEUES + 1", "MAX_THROTTLE_REQUEUES + 2"))),
    Equivalent("switchyard.worker.xǁFlowWorkerǁ_wait_for_reconnect",
               "stamp = raw.get(WAITING_SINCE) if isinstance(raw, dict) else None",
               "stamp = raw.get(WAITING_SINCE) if (isinstance(raw, dict)) or True else None", _ALWAYS_OBJECT),
    Equivalent("switchyard.worker.xǁFlowWorkerǁ_order",
               "refs = order_refs(self._order_ref, event.data) if self._order_ref else []",
               "refs = order_refs(self._order_ref, event.data) if (self._order_ref) or True else []",
               "order_refs of no paths is []: the guard only saves the call"),
    Equivalent("switchyard.worker.x__wait_honouring_retry_after",
               "exc = state.outcome.exception() if state.outcome else None",
               "exc = state.outcome.exception() if (state.outcome) or True else None",
               "tenacity asks for a wait only after an attempt failed: its outcome is always there"),
    Equivalent("switchyard.mapping.conditions.x__compare",
               "number = _decimal(value) if value is not None else None",
               "number = _decimal(value) if (value is not None) or True else None",
               "_decimal(None) is Decimal('None'): InvalidOperation, so None as well; the guard only saves the try"),
    Equivalent("switchyard.mapping.conditions.x__compile_reference",
               "if len(operators) != 1 or not operators <= _OPERATORS.keys():",
               "if len(operators) != 1 or not operators < _OPERATORS.keys():",
               "only asked of a set of one operator (len != 1 is refused first), and one of the nine operators is "
               "a subset of them exactly when it is a proper subset"),
    Equivalent("switchyard.tokens.xǁInMemoryTokenStoreǁ_release", 'self._backend.leases[realm] = ("", 0.0, version)',
               'self._backend.leases[realm] = ("XXXX", 0.0, version)',
               "a released lease expires at 0.0, in the past for every clock: a holder is only one whose lease "
               "has not expired, so the owner text left behind is never read"),
    Equivalent("switchyard.tokens.xǁLeasedTokenStoreǁrefresh", "keep_lease = False", "keep_lease = None",
               "only read as `if not keep_lease`: None is as false as False"),
    Equivalent("switchyard.tokens.xǁInMemoryTokenStoreǁ_try_acquire",
               "if held is not None and held[0] and held[1] > now:",
               "if held is not None and held[1] and held[1] > now:",
               "a lease without an owner is a released one, which expires at 0.0: falsy too, and in the past"),
    Equivalent("switchyard.tokens.xǁInMemoryTokenStoreǁ_release", 'self._backend.leases[realm] = ("", 0.0, version)',
               'self._backend.leases[realm] = ("", 1.0, version)',
               "a released lease expiring one second after the epoch is in the past for every clock, like 0.0"),
)


# mutmut mutates inside functions only: the constants and declarations issue 18 named are mutated here by hand,
# each change made once in a copy of shared/ and run against the tests named for it (every one must fail)
@dataclass(frozen=True)
class HandMutant:
    path: str  # under shared/
    before: str  # occurs exactly once in the file
    after: str
    tests: tuple[str, ...]


_STREAK = "switchyard/systems/streak/__init__.py"
_CLARITY = "switchyard/systems/clarity/__init__.py"
_PERSON_CHANGE = ("tests/unit/test_echoes.py::test_ledger_persons_change_to_one_synced_attribute_is_not_an_echo",)
_REQUEUE_TESTS = ("tests/unit/test_worker.py::test_handle_throttled_the_120th_requeue_is_the_last",)
_TTL_TEST = ("tests/contract/test_entity_state_contract.py::"
             "test_dynamo_entity_state_every_item_expires_90_days_after_its_write",)
_ECHO_WINDOW = ("tests/unit/test_echoes.py::test_ledger_default_echo_window_is_ten_minutes",)
HAND_MUTANTS: tuple[HandMutant, ...] = (
    HandMutant("switchyard/worker.py", 'frozenset({"rate_limited", "rate_limited_locally"})',
               'frozenset({"rate_limited"})',
               ("tests/unit/test_worker.py::"
                "test_handle_own_limiter_wait_on_the_last_receive_is_requeued_not_dead_lettered",)),
    HandMutant("switchyard/worker.py", "MAX_THROTTLE_REQUEUES = 120", "MAX_THROTTLE_REQUEUES = 119", _REQUEUE_TESTS),
    HandMutant("switchyard/worker.py", "MAX_THROTTLE_REQUEUES = 120", "MAX_THROTTLE_REQUEUES = 121", _REQUEUE_TESTS),
    HandMutant("switchyard/echoes.py", "ECHO_TTL_SECONDS = 10 * 60", "ECHO_TTL_SECONDS = 11 * 60", _ECHO_WINDOW),
    HandMutant("switchyard/echoes.py", "ECHO_TTL_SECONDS = 10 * 60", "ECHO_TTL_SECONDS = 9 * 60", _ECHO_WINDOW),
    HandMutant("switchyard/entity_state.py", "RETENTION_SECONDS = 90 * 24 * 3600",
               "RETENTION_SECONDS = 91 * 24 * 3600", _TTL_TEST),
    *(HandMutant(_STREAK, f'"{name}"', f'"XX{name}XX"', _PERSON_CHANGE) for name in (
        "givenName", "familyName", "emailAddresses", "phoneNumbers")),
    *(HandMutant(_CLARITY, f'"{name}"', f'"XX{name}XX"', _PERSON_CHANGE) for name in (
        "firstName", "lastName", "email", "phone")),
    HandMutant("switchyard/systems/quickbooks/webhooks.py", "base64.b64decode(presented, validate=True)",
               "base64.b64decode(presented, validate=False)",
               ("tests/unit/test_quickbooks_webhooks.py::"
                "test_intuit_signature_correct_hmac_with_a_non_base64_character_rejected",)),
)


def run_hand_mutants(mutants: tuple[HandMutant, ...] = HAND_MUTANTS) -> list[tuple[HandMutant, str]]:
    """Each hand mutant's verdict: killed (a named test failed), survived, or stale (its line is gone)."""
    copy = WORKSPACE / "hand" / "shared"
    pytest = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
              "-o", "addopts="]
    named = sorted({test for mutant in mutants for test in mutant.tests})
    if subprocess.run([*pytest, *named], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        return [(mutant, "error (its tests fail on the real code)") for mutant in mutants]
    verdicts = []
    for mutant in mutants:
        source = (ROOT / "shared" / mutant.path).read_text()
        if source.count(mutant.before) != 1:
            verdicts.append((mutant, "stale"))
            continue
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(ROOT / "shared", copy, ignore=shutil.ignore_patterns("__pycache__"))
        (copy / mutant.path).write_text(source.replace(mutant.before, mutant.after))
        # the copy comes first on the path: the editable install's finder only answers what the path does not
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        code = subprocess.run([*pytest, *mutant.tests], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode
        verdicts.append((mutant, "killed" if code == 1 else "survived" if code == 0 else f"error (pytest exit {code})"))
    return verdicts


def equivalent_for(name: str, diff: str) -> Equivalent | None:
    """The listed equivalent this surviving mutant is: same function, same one line changed the same way."""
    function = name.rsplit("__mutmut_", 1)[0]
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return None
    for entry in EQUIVALENT:
        if (entry.function, entry.before, entry.after) == (function, removed[0], added[0]):
            return entry
    return None


_STRING_TEXT = re.compile(r"""(?P<q>['"])(?:XX)?(?P<body>.*?)(?:XX)?(?P=q)""")
_ONLY_TEXT = re.compile(r"""\s*f?(['"]).*\1\s*""")
_FIRST_TEXT = re.compile(r"""f?(['"]).*?(?<!\\)\1""")
_MESSAGE_CALL = re.compile(r"raise \w+\(|Error\(|self\._log\(|logger\.\w+\(|\.(warning|info|error|debug)\(|warn\(")


def is_message_only(diff: str) -> bool:
    """The mutant changes nothing but the text of a message: an exception's or a log line's.

    True when the one changed line, with its string literals compared case-insensitively and without
    mutmut's ``XX`` markers, is the same, and the line raises, constructs an error or logs.
    A string that is data (a key, a reason code, a header name) is never on such a line alone:
    ``reason=`` codes are compared exactly, so changing one is counted.
    """
    lines = diff.splitlines()
    removed = [i for i, line in enumerate(lines) if line.startswith("-") and not line.startswith("---")]
    added = [lines[i][1:] for i, line in enumerate(lines) if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return False
    before, after = lines[removed[0]][1:], added[0]
    # the message may be the only thing on its line, inside a raise or a log call opened just above
    opener = before if _MESSAGE_CALL.search(before) else (
        lines[removed[0] - 1] if _ONLY_TEXT.fullmatch(before) and removed[0] > 0 else "")
    if not _MESSAGE_CALL.search(opener) or "reason=" in _changed_part(before, after):
        return False
    if _FIRST_TEXT.sub("None", before, count=1) == after:  # the message replaced by None
        return True
    return _normalise(before) == _normalise(after) and before != after


def _changed_part(before: str, after: str) -> str:
    """What the mutant changed in ``before``, with the 12 characters ahead of it (``reason="``)."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return before[max(0, start - 12):len(before) - end]


def _normalise(line: str) -> str:
    return _STRING_TEXT.sub(lambda m: m.group("q") + m.group("body").lower() + m.group("q"), line)


# what tests read as files (samples, generated documents, the import-direction check, the packaging checks)
_ALSO_COPY = ("local", "shared", "docs", "functions", "infra", "requirements", "README.md", "LICENSE", "cdk.json")


def _write_workspace(modules: list[str], tests: list[str]) -> None:
    """``.mutation/`` with links to the code and tests, and a pyproject.toml for mutmut."""
    # mutmut never mutates a file it once copied as it was, and learns which tests call a function only
    # from a mutated copy: a module not mutated yet means starting again
    for module in modules:
        copied = WORKSPACE / "mutants/switchyard" / module
        if copied.exists() and "__mutmut_" not in copied.read_text():
            shutil.rmtree(WORKSPACE / "mutants")
            break
    WORKSPACE.mkdir(exist_ok=True)
    for name, target in {"switchyard": ROOT / "shared/switchyard", "tests": ROOT / "tests",
                         **{name: ROOT / name for name in _ALSO_COPY}}.items():
        link = WORKSPACE / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=target.is_dir())
    pyproject = (ROOT / "pyproject.toml").read_text()
    settings = {
        "source_paths": ["switchyard"],
        "only_mutate": [f"switchyard/{module}" for module in CORE_MODULES],  # fixed: see below
        "also_copy": list(_ALSO_COPY),
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
        "timeout_multiplier": 4.0,
        "timeout_constant": 3.0,
    }
    block = "\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    text = pyproject + block
    path = WORKSPACE / "pyproject.toml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# mutmut stops a mutant at a CPU-time limit ((its tests' time + 3 s) x 8) and at half that in wall time. At nice 10
# on a machine loaded 10-35 deep a surviving mutant's honest run (every one of its tests) takes longer than that in
# wall time, and was counted killed: the wall limit is raised to 2 minutes. The CPU limit stays the loop guard, but
# at least 2 minutes: a test's time is measured without its fixtures (a moto DynamoDB table per test costs more CPU
# than the test itself), so 17 quick contract tests had a 30 s limit their honest run passed.
WALL_TIMEOUT_FLOOR = 120.0
CPU_TIMEOUT_FLOOR = 120
LINE_MAP = "tests-by-line.json"  # in the workspace: which tests execute each line of the core
_FAST_DIRS = ("tests/unit", "tests/contract", "tests/integration")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _test_files(selection: list[str]) -> list[str]:
    """The test files (and conftests) of a pytest selection like TEST_SELECTION, relative to the root."""
    ignored = {arg.split("=", 1)[1] for arg in selection if arg.startswith("--ignore=")}
    files = {"tests/conftest.py"}
    for folder in (arg for arg in selection if not arg.startswith("-")):
        files |= {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*.py")}
    return sorted(f for f in files if f not in ignored)


# Run by _measure_lines in the root, in a process of its own: the tests run under coverage.py, and each line's
# contexts are the node ids of the tests that executed it (set and teardown included, as mutmut counts them).
_MEASURE = """
import json, sys
import coverage, pytest
out, include, args = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
cov = coverage.Coverage(data_file=None, include=include)
class TestContext:
    def pytest_runtest_logstart(self, nodeid, location):
        cov.switch_context(nodeid)
cov.start()
code = pytest.main(args, plugins=[TestContext()])
cov.stop()
data = cov.get_data()
lines = {}
for path in data.measured_files():
    by_line = {str(n): sorted(c for c in contexts if c) for n, contexts in data.contexts_by_lineno(path).items()}
    lines[path] = {n: tests for n, tests in by_line.items() if tests}
json.dump({"exit": int(code), "lines": lines}, open(out, "w"))
"""


def _measure_lines(selection: list[str]) -> None:
    """Keep ``LINE_MAP`` up to date: which tests of ``selection`` execute each line of the core modules.

    Measured once with all the tests; afterwards only the test files that changed or are new run again
    (a changed core module or conftest measures everything again, since every test's lines may move)."""
    path = WORKSPACE / LINE_MAP
    sources = {m: _sha(ROOT / "shared/switchyard" / m) for m in CORE_MODULES}
    files = {f: _sha(ROOT / f) for f in _test_files(selection)}
    old = json.loads(path.read_text()) if path.exists() else {}
    conftests_same = all(old.get("files", {}).get(f) == h for f, h in files.items() if f.endswith("conftest.py"))
    if old.get("sources") == sources and conftests_same:
        stale = sorted(f for f, h in files.items() if old["files"].get(f) != h)
        gone = set(old["files"]) - set(files)
        lines = {m: {n: [t for t in tests if t.split("::", 1)[0] not in gone and t.split("::", 1)[0] not in stale]
                     for n, tests in by_line.items()} for m, by_line in old["lines"].items()}
        run = [f for f in stale if not f.endswith("conftest.py")]
    else:
        lines, run = {m: {} for m in CORE_MODULES}, [arg for arg in selection]
    if run:
        print(f"measuring which tests execute each line of the core ({len(run)} test paths)", flush=True)
        include = [str(ROOT / "shared/switchyard" / m) for m in CORE_MODULES]
        out = WORKSPACE / (LINE_MAP + ".new")
        args = [*run, *[a for a in selection if a.startswith("--ignore=")], "-p", "no:randomly",
                "-p", "no:cacheprovider", "-q", "-o", "addopts="]
        subprocess.run([sys.executable, "-c", _MEASURE, str(out), json.dumps(include), *args], cwd=ROOT,
                       stdout=subprocess.DEVNULL, check=False)
        measured = json.loads(out.read_text())
        out.unlink()
        for source, by_line in measured["lines"].items():
            module = str(Path(source).relative_to(ROOT / "shared/switchyard"))
            for n, tests in by_line.items():
                lines[module][n] = sorted(set(lines[module].get(n, [])) | set(tests))
    path.write_text(json.dumps({"sources": sources, "files": files, "lines": lines}))


def _innermost_statement(function: ast.AST, line: int) -> ast.stmt | None:
    """The smallest statement of ``function`` (not the function itself) on which ``line`` lies."""
    found = None
    for node in ast.walk(function):
        if node is function or not isinstance(node, ast.stmt) or node.end_lineno is None:
            continue
        if node.lineno <= line <= node.end_lineno and (found is None or node.lineno >= found.lineno):
            found = node
    return found


def statement_lines(source: str, function: str, class_name: str | None, changed: list[int]) -> list[int] | None:
    """The lines of the statements a mutant changes (``changed``: 0-based offsets from the ``def`` line),
    where coverage.py may record their execution; None when a change lies outside the function's body
    (its signature, a default value: evaluated once at import, so every test of the function counts)."""
    tree = ast.parse(source)
    scope = tree.body
    if class_name is not None:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
        scope = classes[0].body if classes else []
    defs = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
    if not defs:
        return None
    node = defs[0]
    lines: set[int] = set()
    for offset in changed:
        line = node.lineno + offset
        if line < node.body[0].lineno:
            return None
        statement = _innermost_statement(node, line)
        if statement is None:
            return None
        # a compound statement executes its header; a simple one may be recorded on any of its lines
        body = getattr(statement, "body", None)
        last = line if isinstance(body, list) and body else statement.end_lineno or line
        lines |= set(range(statement.lineno, last + 1))
    return sorted(lines)


def _changed_offsets(original: str, mutant: str, function: str) -> list[int] | None:
    """0-based offsets, from the ``def`` line, of the lines of ``original`` the mutant changes."""
    before, after = original.split("\n"), mutant.split("\n")
    header = re.compile(rf"\s*(async\s+)?def\s+{re.escape(function)}\b")
    starts = [i for i, text in enumerate(before) if header.match(text)]
    if not starts:
        return None
    changed: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:  # only an insertion: nothing of the original to point at
            return None
        changed |= set(range(i1, i2))
    return sorted(i - starts[0] for i in changed) or None


def tests_of_mutated_lines(mutant_name: str, tests: list[str], by_line: dict[str, dict[str, list[str]]]) -> list[str]:
    """Of the tests calling a mutant's function, those executing the statement it changes (all of them
    when the statement cannot be told)."""
    from mutmut.mutation.diff_apply import read_functions_from_index
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    module = _module_of(mutant_name.partition("__mutmut_")[0])
    function, class_name = orig_function_and_class_names_from_key(mutant_name)
    functions = read_functions_from_index(mutant_name, Path("switchyard") / module)
    if functions is None or module not in by_line:
        return tests
    import libcst

    original, mutated = (libcst.Module([f]).code.strip() for f in functions)
    offsets = _changed_offsets(original, mutated, function)
    source = (ROOT / "shared/switchyard" / module).read_text()
    lines = None if offsets is None else statement_lines(source, function, class_name, offsets)
    if lines is None:
        return tests
    executing = set().union(*(by_line[module].get(str(n), ()) for n in lines))
    return line_selected_tests(tests, executing)


def line_selected_tests(callers: list[str], executing: set[str]) -> list[str]:
    """The tests to run for a mutant: every test that executed its statement. Mostly a subset of those calling
    its function; but a closure the function returns (``_matcher``'s lambda) runs in tests that never call the
    function, e.g. with the mapping compiled by an earlier test: mutmut does not count them as callers, and a
    mutant of the closure survived although 4 of the 173 tests running it fail."""
    return [t for t in callers if t in executing] + sorted(executing.difference(callers))


# mutmut's own command, with each mutant's tests narrowed to those executing its line (LINE_MAP)
_RUN_BY_LINE = """
import json, sys
import mutmut.__main__ as mutmut_main
import mutmut.workers.isolation as isolation
from switchyard_local.mutation import CPU_TIMEOUT_FLOOR, LINE_MAP, WALL_TIMEOUT_FLOOR, tests_of_mutated_lines
by_line = json.load(open(LINE_MAP))["lines"]
log = open(LINE_MAP + ".log", "a")
make_runner = mutmut_main.get_mutant_runner
def get_mutant_runner(*args, **kwargs):
    runner = make_runner(*args, **kwargs)
    submit = runner.submit
    def submit_line_tests(mutant_name, tests, cpu_time_limit, estimated_time):
        # the quickest first: -x stops at the first failure, and most mutants are killed
        durations = mutmut_main.state().duration_by_test
        narrowed = sorted(tests_of_mutated_lines(mutant_name, list(tests), by_line),
                          key=lambda test: (durations.get(test, 0.0), test))
        log.write(json.dumps([mutant_name, len(tests), len(narrowed)]) + "\\n")
        log.flush()
        return submit(mutant_name, narrowed, max(cpu_time_limit, CPU_TIMEOUT_FLOOR), estimated_time)
    runner.submit = submit_line_tests
    return runner
mutmut_main.get_mutant_runner = get_mutant_runner
register_timeout = isolation.register_timeout
isolation.register_timeout = lambda pid, timeout_s: register_timeout(pid, max(timeout_s, WALL_TIMEOUT_FLOOR))
mutmut_main.cli.main(args=sys.argv[1:], prog_name="mutmut")
"""


def _mutmut(*args: str, max_children: int, deadline: float | None = None, quiet: bool = False,
            by_line: bool = False) -> int | None:
    """Run mutmut in the workspace; past ``deadline`` (monotonic) it is stopped: what it checked is kept.
    ``by_line``: each mutant runs only the tests executing the statement it changes (``LINE_MAP``)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    if by_line and args[0] == "run":
        command = [sys.executable, "-c", _RUN_BY_LINE, *args]
    if args[0] == "run":
        command.insert(len(command) - len(args) + 1, f"--max-children={max_children}")
    # mutmut says why it failed (a test failing in the stats or clean run) on stdout, between its progress lines
    log = WORKSPACE / MUTMUT_LOG
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=WORKSPACE, env=env, stdout=output,
                                   stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=None if deadline is None else max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # its own session: mutmut and the test processes it forked
            process.wait()
            print("time budget spent: stopped; mutants not reached are reported as not checked")
            return None
    if code != 0 and not quiet:
        print(failure_summary(log.read_text(errors="replace")))
    return code


MUTMUT_LOG = "mutmut.log"  # in the workspace: the last mutmut run's output


def failure_summary(output: str, lines: int = 15) -> str:
    """What a failed mutmut run said: its failing tests and errors, else its last lines (its progress
    spinner rewrites one line with carriage returns: only the last state of each line is kept)."""
    text = [line.rsplit("\r", 1)[-1] for line in output.split("\n")]
    text = [line for line in text if line.strip()]
    telling = [line for line in text if line.startswith(("FAILED ", "ERROR ", "E   "))
               or re.match(r"\w+(Error|Exception): ", line) or "failed to" in line.lower()]
    return "\n".join((telling or text)[-lines:])


@dataclass
class ModuleScore:
    module: str
    killed: int = 0
    timeouts: int = 0  # of killed: a test ran past its time (a loop, or a machine too loaded)
    timed_out: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    message_only: int = 0
    equivalent: list[str] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        counted = self.killed + len(self.survived)
        return None if counted == 0 else 100.0 * self.killed / counted


USED_EQUIVALENTS: set[Equivalent] = set()


def _module_of(function: str) -> str:
    """``switchyard.mapping.rules.x_compile`` -> ``mapping/rules.py``."""
    return "/".join(function.split(".")[1:-1]) + ".py"


def _results(modules: list[str]) -> list[ModuleScore]:
    """Read mutmut's verdicts (from inside the workspace's own process: its loaders need the cwd)."""
    script = f"""
import json, sys
from pathlib import Path
from mutmut.configuration import config
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
out = {{}}
for module in {modules!r}:
    path = Path("switchyard") / module
    m = SourceFileMutationData(path=path)
    m.load()
    rows = []
    for name, code in m.exit_code_by_key.items():
        status = status_by_exit_code[code]
        diff = get_diff_for_mutant(name, path=path) if status in ("survived",) else ""
        rows.append((name, status, diff))
    out[module] = rows
json.dump(out, sys.stdout)
"""
    raw = subprocess.run([sys.executable, "-c", script], cwd=WORKSPACE, capture_output=True, text=True, check=True)
    scores = []
    for module, rows in json.loads(raw.stdout).items():
        score = ModuleScore(module)
        for name, status, diff in rows:
            if not _wanted(module, name):
                continue
            if status in ("killed", "timeout"):
                score.killed += 1
                score.timeouts += status == "timeout"
                if status == "timeout":
                    score.timed_out.append(name)
            elif status == "survived":
                equivalent = equivalent_for(name, diff)
                if equivalent is not None:
                    score.equivalent.append(name)
                    USED_EQUIVALENTS.add(equivalent)
                elif is_message_only(diff):
                    score.message_only += 1
                else:
                    score.survived.append(name + "\n" + diff)
            elif status == "no tests":
                score.no_tests.append(name)
            else:
                score.other[status] = score.other.get(status, 0) + 1
        scores.append(score)
    return scores


def _report(scores: list[ModuleScore], *, show_survivors: bool) -> None:
    print(f"\n{'module':<22}{'score':>8}{'killed':>8}{'timeout':>9}{'survived':>10}{'no tests':>10}{'message':>9}"
          f"{'equiv.':>8}")
    for s in scores:
        figure = "-" if s.score is None else f"{s.score:.1f}%"
        print(f"{s.module:<22}{figure:>8}{s.killed:>8}{s.timeouts:>9}{len(s.survived):>10}{len(s.no_tests):>10}"
              f"{s.message_only:>9}{len(s.equivalent):>8}" + (f"  {s.other}" if s.other else ""))
    # only a module whose every mutant has its verdict can tell (a sample may just not have drawn the mutant)
    complete = {s.module for s in scores if not s.other.get("not checked")}
    stale = [e for e in EQUIVALENT if e not in USED_EQUIVALENTS and _module_of(e.function) in complete]
    for entry in stale:  # its mutant was killed, or the line changed: the entry should go or be rewritten
        print(f"STALE EQUIVALENT (matches no survivor) {entry.function}: {entry.before!r} -> {entry.after!r}")
    if show_survivors:
        for s in scores:
            for survivor in s.survived:
                print(f"\nSURVIVED {survivor}")
            for name in s.no_tests:
                print(f"NO TESTS {name}")
            for name in s.timed_out:  # killed by mutmut's rule; MUTATION_ARGS=--timeouts runs them again
                print(f"TIMEOUT {name}")


def _changed_modules(base: str) -> list[str] | None:
    """The core modules changed since ``base`` (committed and not); None when ``base`` is no commit here
    (a clone of one commit has no ``HEAD~1``)."""
    known = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True)
    if known.returncode != 0:
        return None
    names = subprocess.run(["git", "diff", "--name-only", f"{base}...HEAD", "--", "shared/switchyard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names += subprocess.run(["git", "diff", "--name-only", "HEAD", "--", "shared/switchyard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    core = {f"shared/switchyard/{m}": m for m in CORE_MODULES}
    return sorted({core[n] for n in names if n in core})


def _mutant_names(modules: list[str]) -> list[str]:
    script = f"""
import json, sys
from pathlib import Path
from mutmut.mutation.data import SourceFileMutationData
names = []
for module in {modules!r}:
    m = SourceFileMutationData(path=Path("switchyard") / module)
    m.load()
    names += list(m.exit_code_by_key)
json.dump(names, sys.stdout)
"""
    raw = subprocess.run([sys.executable, "-c", script], cwd=WORKSPACE, capture_output=True, text=True, check=True)
    return json.loads(raw.stdout)


def _generate_mutants() -> None:
    """What ``mutmut run`` does first (copy the code, write every mutant), without running any test."""
    script = """
import os
from mutmut.__main__ import create_mutants
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
create_mutants(1)
"""
    subprocess.run([sys.executable, "-c", script], cwd=WORKSPACE, capture_output=True, text=True, check=True)


def _sample(modules: list[str], size: int, seed: int, *, skip_checked: bool) -> list[str]:
    """At most ``size`` mutant names, spread evenly over ``modules``, drawn the same way for the same seed;
    with ``skip_checked`` the draw passes over mutants that have a verdict (a full run done in slices)."""
    _generate_mutants()
    names: list[str] = []
    for module in modules:
        candidates = sorted(n for n in _mutant_names([module]) if _wanted(module, n))
        random.Random(seed).shuffle(candidates)
        if skip_checked:
            unchecked = set(_unchecked(module))
            candidates = [n for n in candidates if n in unchecked]
        names += candidates[: max(1, size // len(modules))]
    return names


def _unchecked(module: str) -> list[str]:
    """The module's mutants without a verdict (all of them in a new workspace)."""
    _generate_mutants()
    script = f"""
import json, sys
from pathlib import Path
from mutmut.mutation.data import SourceFileMutationData
m = SourceFileMutationData(path=Path("switchyard") / {module!r})
m.load()
json.dump([name for name, code in m.exit_code_by_key.items() if code is None], sys.stdout)
"""
    raw = subprocess.run([sys.executable, "-c", script], cwd=WORKSPACE, capture_output=True, text=True, check=True)
    return [name for name in json.loads(raw.stdout) if _wanted(module, name)]


def _wanted(module: str, name: str) -> bool:
    functions = ONLY_FUNCTIONS.get(module)
    return not functions or any(f".x_{function}__mutmut_" in name for function in functions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard-mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"paths under shared/switchyard (default: {' '.join(CORE_MODULES)})")
    parser.add_argument("--changed", metavar="BASE", help="only the core modules changed against BASE (e.g. main)")
    parser.add_argument("--sample", type=int, default=0, help="at most this many mutants, drawn at random")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="forget earlier verdicts (after changing tests)")
    parser.add_argument("--survivors", action="store_true",
                        help="run again only the mutants that survived last time, or that no test reached "
                             "(after adding tests)")
    parser.add_argument("--timeouts", action="store_true",
                        help="run again only the mutants that timed out last time (on a loaded machine)")
    parser.add_argument("--by-function", action="store_true",
                        help="run each mutant against every test calling its function (mutmut's own way), "
                             "not only those executing its line")
    parser.add_argument("--hand", action="store_true",
                        help="only the hand mutants (run after a full run's modules; see HAND_MUTANTS)")
    parser.add_argument("--budget-seconds", type=float, default=0, help="stop mutating after this long")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 when a module (with --sample: the whole sample) scores below this")
    args = parser.parse_args(argv)

    global WORKSPACE
    if args.changed:
        WORKSPACE = ROOT / ".mutation-changed"
    modules = _changed_modules(args.changed) if args.changed else (args.modules or list(CORE_MODULES))
    if modules is None:
        print(f"{args.changed} is not a commit of this clone: nothing to compare with, nothing mutated")
        return 0
    unknown = [m for m in modules if m not in CORE_MODULES]
    if unknown:
        parser.error(f"not a core module: {unknown}")
    if not modules:
        print("no core module changed: nothing to mutate")
        return 0
    if args.hand:
        return _report_hand(run_hand_mutants())
    if args.fresh and (WORKSPACE / "mutants").exists():
        shutil.rmtree(WORKSPACE / "mutants")
    _write_workspace(modules, QUICK_TEST_SELECTION if args.changed else TEST_SELECTION)
    # by line costs one measured run of the suites first: worth it for a full run, not for CI's 30 mutants
    by_line = not args.changed and not args.by_function
    if by_line:
        _measure_lines(TEST_SELECTION)
    started = time.monotonic()
    deadline = started + args.budget_seconds if args.budget_seconds else None
    if args.sample:
        # one mutmut run for the whole sample: the suites run once to learn who calls what, then only the tests
        # of the sampled mutants
        names = _sample(modules, args.sample, args.seed, skip_checked=not args.changed)
        print(f"mutating {len(names)} sampled mutants of {', '.join(modules)}", flush=True)
        code = _mutmut("run", *names, max_children=args.max_children, deadline=deadline,
                       by_line=by_line) if names else 0
        if code not in (0, None):  # e.g. the clean tests failed: no verdict means nothing, say so
            print(f"mutmut failed (exit {code}): its output is in {WORKSPACE / MUTMUT_LOG}")
            return 1
    for module in ([] if args.sample else modules):  # one at a time: the machine is shared
        names = []
        if args.survivors or args.timeouts:
            # the mutants no test reached too: a test added since may reach them
            names = [survivor.split("\n", 1)[0] for s in _results([module]) for survivor in s.survived
                     if args.survivors] + [name for s in _results([module]) for name in s.no_tests if args.survivors]
            names += [name for s in _results([module]) for name in s.timed_out if args.timeouts]
            if not names:
                print(f"{module}: no survivors or timeouts to run again")
                continue
        else:  # what has no verdict yet: a stopped run goes on where it was (--fresh starts again)
            names = _unchecked(module)
            if not names:
                print(f"{module}: every mutant has its verdict (--fresh to run them again)")
                continue
        print(f"mutating {module} ({len(names)} mutants)", flush=True)
        code = _mutmut("run", *names, max_children=args.max_children, deadline=deadline, by_line=by_line)
        if code is None:
            break
        if code != 0:  # e.g. the clean tests failed: no verdict means nothing, say so
            print(f"mutmut failed (exit {code}) on {module}: its output is in {WORKSPACE / MUTMUT_LOG}")
            return 1
    scores = _results(modules)
    _report(scores, show_survivors=True)
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.sample:  # a sample is judged as one: a few mutants per module say little about each
        killed = sum(s.killed for s in scores)
        counted = killed + sum(len(s.survived) for s in scores)
        pooled = None if counted == 0 else 100.0 * killed / counted
        print(f"sample: {'-' if pooled is None else f'{pooled:.1f}%'} ({killed} killed of {counted} checked; "
              f"at least {args.min_score:.0f}% asked)")
        return 1 if pooled is not None and pooled < args.min_score else 0
    low = [s.module for s in scores if s.score is not None and s.score < args.min_score]
    hand_failed = 0 if args.modules else _report_hand(run_hand_mutants())  # a full run: the hand mutants too
    return 1 if low or hand_failed else 0


def _report_hand(verdicts: list[tuple[HandMutant, str]]) -> int:
    """Print the hand mutants' verdicts; 1 when one is not killed."""
    killed = sum(verdict == "killed" for _, verdict in verdicts)
    print(f"\nhand mutants (constants and declarations mutmut does not reach): {killed} of {len(verdicts)} killed")
    for mutant, verdict in verdicts:
        if verdict != "killed":
            print(f"HAND MUTANT {verdict.upper()} {mutant.path}: {mutant.before!r} -> {mutant.after!r}")
    return 0 if killed == len(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
