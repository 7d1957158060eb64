"""What a failed execution's Cause is read as: a Lambda function error is one whatever else it carries.

Written for what mutation testing of state_machines.py found unpinned (docs/mutation-testing.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from switchyard.state_machines import failure_letter

FLOW = "nopcommerce-to-quickbooks"


def test_failure_letter_of_a_lambda_error_carrying_a_reason_key_reads_its_error_message():
    # a wait's failure is a bare {"reason": ...}; a Lambda error has errorMessage, even if a runtime adds a reason
    details = {"reason": "document_missing", "error_class": "permanent", "message": "no invoice 1042"}
    cause = json.dumps({"errorMessage": json.dumps(details), "errorType": "StepFailed", "reason": "Unhandled",
                        "stackTrace": []})

    letter = failure_letter(FLOW, {"message": "m", "error": {"Error": "StepFailed", "Cause": cause}},
                            now=lambda: datetime(2026, 12, 3, tzinfo=UTC))

    assert (letter.reason, letter.error_class, letter.message) == ("document_missing", "permanent", "no invoice 1042")
