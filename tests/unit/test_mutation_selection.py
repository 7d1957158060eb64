"""`make mutation` runs each mutant only against the tests that execute the statement it changes, and
mutates by hand the constants mutmut cannot reach: how a mutant is placed on its source lines, and the hand
mutants' own checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchyard_local.mutation import (
    _ALSO_COPY,
    HAND_MUTANTS,
    _changed_offsets,
    _test_files,
    failure_summary,
    line_selected_tests,
    statement_lines,
)

import infra.paths as paths

ROOT = Path(__file__).resolve().parents[2]

SOURCE = '''\
import re

LIMIT = 3


def pick(items, limit=LIMIT):
    chosen = []
    for item in items:
        if (item.ready
                and item.size < limit):
            chosen.append(item)
    total = sum(
        item.size for item in chosen)
    return chosen, total


class Box:
    @property
    def weight(self):
        return self.items * 2
'''


def test_statement_lines_of_a_simple_statement_are_its_own() -> None:
    # offset 1 from `def pick`: `chosen = []` (line 7)
    assert statement_lines(SOURCE, "pick", None, [1]) == [7]


def test_statement_lines_of_a_change_on_a_continuation_line_cover_the_whole_statement() -> None:
    # `item.size for item in chosen)` (line 13) is part of the statement starting on line 12
    assert statement_lines(SOURCE, "pick", None, [7]) == [12, 13]


def test_statement_lines_of_a_compound_statement_s_header_stop_at_the_changed_line() -> None:
    # `and item.size < limit):` (line 10): the `if` header, not the body it guards
    assert statement_lines(SOURCE, "pick", None, [4]) == [9, 10]


def test_statement_lines_of_a_change_in_the_signature_are_unknown() -> None:
    # a default value is evaluated once, at import: every test of the function may see it
    assert statement_lines(SOURCE, "pick", None, [0]) is None


def test_statement_lines_of_a_decorated_method_count_from_its_def_line() -> None:
    assert statement_lines(SOURCE, "weight", "Box", [1]) == [20]
    assert statement_lines(SOURCE, "weight", "Other", [1]) is None


def test_changed_offsets_count_from_the_def_line_past_decorators_and_comments() -> None:
    original = "# a comment\n@property\ndef weight(self):\n    x = 1\n    return x * 2"
    mutant = "# a comment\n@property\ndef weight(self):\n    x = 1\n    return x / 2"
    assert _changed_offsets(original, mutant, "weight") == [2]


def test_changed_offsets_of_a_pure_insertion_or_another_function_are_unknown() -> None:
    original = "def f():\n    return 1"
    assert _changed_offsets(original, "def f():\n    pass\n    return 1", "f") is None
    assert _changed_offsets(original, "def f():\n    return 2", "g") is None


def test_test_files_of_a_selection_leave_out_the_ignored_ones() -> None:
    files = _test_files(["tests/integration", "--ignore=tests/integration/test_fuzz_small.py"])
    assert "tests/conftest.py" in files
    assert "tests/integration/test_fuzz_small.py" not in files
    assert all(f.startswith("tests/") for f in files) and len(files) > 3


@pytest.mark.parametrize("mutant", HAND_MUTANTS, ids=lambda m: f"{Path(m.path).stem}:{m.after}")
def test_every_hand_mutant_changes_one_place_of_today_s_code_and_names_existing_tests(mutant) -> None:
    source = (ROOT / "shared" / mutant.path).read_text()
    assert source.count(mutant.before) == 1 and mutant.before != mutant.after
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), test


def test_workspace_holds_every_file_the_cdk_app_reads_from_the_repository_root() -> None:
    # the synth tests build the app inside the workspace: a missing cdk.json failed mutmut's stats run
    read = {value.relative_to(paths.REPO_ROOT).parts[0] for value in vars(paths).values()
            if isinstance(value, Path) and value != paths.REPO_ROOT}
    assert read <= set(_ALSO_COPY) | {"switchyard"}, read - set(_ALSO_COPY)


def test_failure_summary_of_a_mutmut_run_names_the_failing_test_and_its_error() -> None:
    output = ("⠋ Running stats\r⠙ Running stats\nsome progress\n"
              "FileNotFoundError: [Errno 2] No such file or directory: 'cdk.json'\n"
              "FAILED tests/unit/test_x.py::test_synth - FileNotFoundError\n"
              "failed to collect stats. runner returned 1\n")
    summary = failure_summary(output).splitlines()
    assert summary == ["FileNotFoundError: [Errno 2] No such file or directory: 'cdk.json'",
                       "FAILED tests/unit/test_x.py::test_synth - FileNotFoundError",
                       "failed to collect stats. runner returned 1"]
    assert failure_summary("⠋ a\r⠙ last state\n") == "⠙ last state"


def test_tests_of_a_mutant_are_those_executing_its_statement_callers_of_its_function_first() -> None:
    callers = ["t/a.py::compiles", "t/a.py::compiles_other", "t/b.py::never_reaches_it"]
    executing = {"t/a.py::compiles", "t/a.py::compiles_other", "t/c.py::uses_a_cached_closure"}

    assert line_selected_tests(callers, executing) == ["t/a.py::compiles", "t/a.py::compiles_other",
                                                   "t/c.py::uses_a_cached_closure"]
