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
    "state_machines.py", "mapping/rules.py", "tokens.py",
)
# state_machines: only its error translation is core; the rest is the local stack's plumbing
ONLY_FUNCTIONS = {"state_machines.py": ("_error_code", "step_error", "run_step", "step_failure", "failure_letter")}

# the fast suites; the harness-style integration tests are too slow to run per mutant
TEST_SELECTION = [
    "tests/unit", "tests/contract", "tests/integration",
    "--ignore=tests/integration/test_chaos_sync.py", "--ignore=tests/integration/test_fuzz_small.py",
]

# for a change (CI): the quick suites only, in a workspace of its own (another test selection would make mutmut
# forget the full run's verdicts)
QUICK_TEST_SELECTION = ["tests/unit", "tests/contract"]

# mutants judged equivalent (no behaviour can tell them apart), by mutant name, with why
_SORTED = ("the dict is built in a fixed order (the synced attributes' tuple, or sorted(state)), "
           "so sorting its keys again changes no fingerprint's equality")
_NO_KEY = ("an event without its key attribute: with '' it skips the ledger, with 'None'/'XXXX' it asks the "
           "ledger for a key no write records (keys are the written objects' ids), finds nothing and delivers")
_KEYWORD_CASE = "DynamoDB's expression keywords (SET, AND, OR) are case-insensitive"
_UNREAD_EVENT_ID = "the in-memory fake keeps the claiming event id like the DynamoDB item, but nothing reads it"
_ONE_COMMA = ("partition → rpartition on 'v1,<base64>': base64 has no comma, so both split at the same place "
              "(and an entry with two commas is skipped either way: a comma is not base64, 'v1,a' is not v1)")
EQUIVALENT: dict[str, str] = {
    "switchyard.echoes.x_fingerprint__mutmut_8": _SORTED,
    "switchyard.echoes.x_fingerprint__mutmut_11": _SORTED,
    "switchyard.echoes.x_fingerprint__mutmut_14": _SORTED,
    "switchyard.echoes.x_fingerprint__mutmut_16": "a 25-character prefix of the digest is as good a key as 24: "
                                                  "record and consume use the same function",
    "switchyard.echoes.xǁDynamoEchoLedgerǁconsume__mutmut_18": _KEYWORD_CASE,
    "switchyard.entity_state.xǁDynamoEntityStateǁclaim__mutmut_24": _KEYWORD_CASE,
    "switchyard.entity_state.xǁDynamoEntityStateǁclaim__mutmut_27": _KEYWORD_CASE,
    "switchyard.entity_state.xǁDynamoEntityStateǁmark_filtered__mutmut_16": _KEYWORD_CASE,
    "switchyard.entity_state.xǁInMemoryEntityStateǁclaim__mutmut_15": _UNREAD_EVENT_ID,
    "switchyard.entity_state.xǁInMemoryEntityStateǁclaim__mutmut_17": _UNREAD_EVENT_ID,
    "switchyard.signatures.xǁStandardWebhookVerifierǁverify__mutmut_54": _ONE_COMMA,
    "switchyard.signatures.x__v1_signatures__mutmut_4": _ONE_COMMA,
    "switchyard.echoes.xǁEchoSuppressingTargetǁdeliver__mutmut_8": _NO_KEY,
    "switchyard.echoes.xǁEchoSuppressingTargetǁdeliver__mutmut_10": _NO_KEY,
    "switchyard.echoes.xǁEchoSuppressingTargetǁdeliver__mutmut_11": _NO_KEY,
}

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
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    return before[max(0, start - 12):]


def _normalise(line: str) -> str:
    return _STRING_TEXT.sub(lambda m: m.group("q") + m.group("body").lower() + m.group("q"), line)


# what tests read as files (samples, generated documents, the import-direction check)
_ALSO_COPY = ("local", "shared", "docs", "functions", "infra")


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
            link.symlink_to(target, target_is_directory=True)
    pyproject = (ROOT / "pyproject.toml").read_text()
    settings = {
        "source_paths": ["switchyard"],
        "only_mutate": [f"switchyard/{module}" for module in CORE_MODULES],  # fixed: see below
        "also_copy": list(_ALSO_COPY),
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
        "timeout_multiplier": 10.0,
        "timeout_constant": 5.0,
    }
    block = "\n[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    text = pyproject + block
    path = WORKSPACE / "pyproject.toml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _mutmut(*args: str, max_children: int, deadline: float | None = None, quiet: bool = False) -> int | None:
    """Run mutmut in the workspace; past ``deadline`` (monotonic) it is stopped: what it checked is kept."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    if args[0] == "run":
        command.insert(2, f"--max-children={max_children}")
    process = subprocess.Popen(command, cwd=WORKSPACE, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL if quiet else None, start_new_session=True)
    try:
        return process.wait(timeout=None if deadline is None else max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: mutmut and the test processes it forked
        process.wait()
        print("time budget spent: stopped; mutants not reached are reported as not checked")
        return None


@dataclass
class ModuleScore:
    module: str
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    message_only: int = 0
    equivalent: int = 0
    other: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        counted = self.killed + len(self.survived)
        return None if counted == 0 else 100.0 * self.killed / counted


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
            if name in EQUIVALENT:
                score.equivalent += 1
            elif status in ("killed", "timeout"):
                score.killed += 1
            elif status == "survived":
                if is_message_only(diff):
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
    print(f"\n{'module':<22}{'score':>8}{'killed':>8}{'survived':>10}{'no tests':>10}{'message':>9}{'equiv.':>8}")
    for s in scores:
        figure = "-" if s.score is None else f"{s.score:.1f}%"
        print(f"{s.module:<22}{figure:>8}{s.killed:>8}{len(s.survived):>10}{len(s.no_tests):>10}"
              f"{s.message_only:>9}{s.equivalent:>8}" + (f"  {s.other}" if s.other else ""))
    if show_survivors:
        for s in scores:
            for survivor in s.survived:
                print(f"\nSURVIVED {survivor}")
            for name in s.no_tests:
                print(f"NO TESTS {name}")


def _changed_modules(base: str) -> list[str]:
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


def _globs(module: str) -> list[str]:
    dotted = "switchyard." + module[:-3].replace("/", ".")
    if module in ONLY_FUNCTIONS:
        return [f"{dotted}.x_{function}__mutmut_*" for function in ONLY_FUNCTIONS[module]]
    return [f"{dotted}.*"]


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
    parser.add_argument("--budget-seconds", type=float, default=0, help="stop mutating after this long")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 when a module scores below this")
    args = parser.parse_args(argv)

    global WORKSPACE
    if args.changed:
        WORKSPACE = ROOT / ".mutation-changed"
    modules = _changed_modules(args.changed) if args.changed else (args.modules or list(CORE_MODULES))
    unknown = [m for m in modules if m not in CORE_MODULES]
    if unknown:
        parser.error(f"not a core module: {unknown}")
    if not modules:
        print("no core module changed: nothing to mutate")
        return 0
    if args.fresh and (WORKSPACE / "mutants").exists():
        shutil.rmtree(WORKSPACE / "mutants")
    _write_workspace(modules, QUICK_TEST_SELECTION if args.changed else TEST_SELECTION)
    started = time.monotonic()
    deadline = started + args.budget_seconds if args.budget_seconds else None
    for module in modules:  # one at a time: the machine is shared
        names: list[str] = []
        if args.sample:
            # a filter matching nothing: mutmut generates the mutants and learns the tests, then stops
            _mutmut("run", "switchyard.matches-no-mutant", max_children=args.max_children, deadline=deadline,
                    quiet=True)
            names = [n for n in _mutant_names([module]) if _wanted(module, n)]
            random.Random(args.seed).shuffle(names)
            names = names[: max(1, args.sample // len(modules))]
        print(f"mutating {module}" + (f" ({len(names)} sampled mutants)" if names else ""), flush=True)
        if _mutmut("run", *(names or _globs(module)), max_children=args.max_children, deadline=deadline) is None:
            break
    scores = _results(modules)
    _report(scores, show_survivors=True)
    print(f"\n{time.monotonic() - started:.0f} s")
    low = [s.module for s in scores if s.score is not None and s.score < args.min_score]
    return 1 if low else 0


if __name__ == "__main__":
    raise SystemExit(main())
