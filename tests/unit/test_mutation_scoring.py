"""`make mutation` leaves out mutants that only change a message's text, and nothing else."""

from __future__ import annotations

import pytest
from switchyard_local.mutation import is_message_only


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


def test_message_replaced_by_none_not_counted() -> None:
    assert is_message_only(diff('raise SignatureError("body is not UTF-8 text") from None',
                                "raise SignatureError(None) from None")) is True
