"""`make mutation` leaves out mutants that only change a message's text, and the equivalent mutants it lists by
what they change: nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchyard_local.mutation import EQUIVALENT, _changed_modules, equivalent_for, is_message_only


def diff(before: str, after: str) -> str:
    return f"--- a.py\n+++ a.py\n@@ -1,1 +1,1 @@\n-{before}\n+{after}"


@pytest.mark.parametrize(("before", "after"), [
    ('raise SignatureError("the token does not match")', 'raise SignatureError("XXthe token does not matchXX")'),
    ('raise SignatureError("the token does not match")', 'raise SignatureError("THE TOKEN DOES NOT MATCH")'),
    ('    self._log("warning", "retry later", event)', '    self._log("warning", "XXretry laterXX", event)'),
])
def test_message_only_mutant_of_an_error_or_log_text_not_counted(before: str, after: str) -> None:
    assert is_message_only(diff(before, after)) is True


@pytest.mark.parametrize(("before", "after"), [
    ('raise PermanentError("x", reason="unmapped_value")', 'raise PermanentError("x", reason="XXunmapped_valueXX")'),
    ('    key = str(event.data.get(key_attribute, ""))', '    key = str(event.data.get(key_attribute, "XXXX"))'),
    ('    if not comma or version != "v1":', '    if not comma or version != "XXv1XX":'),
    ('        raise SignatureError("no match")', '        raise RetryableError("no match")'),
])
def test_mutant_changing_data_or_behaviour_counted(before: str, after: str) -> None:
    assert is_message_only(diff(before, after)) is False


def test_message_on_its_own_line_inside_a_raise_not_counted() -> None:
    text = ('@@ -1,3 +1,3 @@\n         raise StaleTimestampError(\n'
            '-            f"outside the {self._tolerance // 60}-minute tolerance"\n'
            '+            f"outside the {self._tolerance // 61}-minute tolerance"\n         )')
    assert is_message_only(text) is False  # an expression inside the text: counted
    text = text.replace("// 61}-minute", "// 60}-MINUTE")
    assert is_message_only(text) is True


def test_message_of_an_error_with_a_reason_code_not_counted_but_the_reason_code_is() -> None:
    before = 'raise RetryableError(f"rate limiter for {key} unreadable", reason="rate_limiter_unavailable") from exc'
    assert is_message_only(diff(before, before.replace('f"rate limiter for {key} unreadable"', "None"))) is True
    assert is_message_only(diff(before, before.replace("unreadable", "UNREADABLE"))) is True
    assert is_message_only(diff(before, before.replace('"rate_limiter_unavailable"', '"RATE_LIMITER_UNAVAILABLE"'))) \
        is False


def test_message_replaced_by_none_not_counted() -> None:
    assert is_message_only(diff('raise SignatureError("body is not UTF-8 text") from None',
                                "raise SignatureError(None) from None")) is True


SORT_KEYS = "canonical = json.dumps({name: state.get(name) for name in attributes}, sort_keys=True, default=str)"


def test_equivalent_mutant_matched_by_its_change_whatever_mutmut_numbers_it() -> None:
    mutant = diff(f"    {SORT_KEYS}", "    " + SORT_KEYS.replace("True", "False"))
    for number in (14, 3, 40):
        assert equivalent_for(f"switchyard.echoes.x_fingerprint__mutmut_{number}", mutant) is not None


def test_equivalent_list_excuses_no_other_change_of_the_same_line_or_function() -> None:
    reversed_sort = diff(f"    {SORT_KEYS}", "    " + SORT_KEYS.replace("default=str", "default=None"))
    assert equivalent_for("switchyard.echoes.x_fingerprint__mutmut_14", reversed_sort) is None
    same_change_elsewhere = diff(f"    {SORT_KEYS}", "    " + SORT_KEYS.replace("True", "False"))
    assert equivalent_for("switchyard.echoes.x_record__mutmut_14", same_change_elsewhere) is None


def test_every_listed_equivalent_is_a_line_of_today_s_code_and_says_why() -> None:
    root = Path(__file__).resolve().parents[2] / "shared"
    for entry in EQUIVALENT:
        module = root / Path(*entry.function.split(".")[:-1]).with_suffix(".py")
        assert entry.before in module.read_text(), f"{entry.function}: {entry.before!r} is not in {module.name}"
        assert entry.before != entry.after and len(entry.why) > 20


def test_changed_modules_without_the_base_commit_mutate_nothing() -> None:
    # CI on a clone of one commit has no HEAD~1: nothing to compare with, not every module
    assert _changed_modules("0000000000000000000000000000000000000000") is None
    assert _changed_modules("refs/heads/no-such-branch-anywhere") is None
