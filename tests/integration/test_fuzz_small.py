"""A small `make fuzz` (switchyard_local.fuzz): every hostile class before and after the signature check,
a few schemathesis requests per endpoint of docs/openapi.json, and the parsers under hypothesis."""

from __future__ import annotations

import io

from switchyard_local.fuzz import fuzz

HOSTILE_CLASSES = ("deep nesting", "huge integers", "NaN/Infinity", "huge strings", "duplicate keys",
                   "wrong content types", "absurd headers")
SOURCES = ("nopcommerce", "clarity", "streak", "quickbooks")


def test_fuzz_small_run_no_5xx_and_nothing_queued_for_a_rejected_request() -> None:
    out = io.StringIO()

    report = fuzz(seconds=240, examples=3, hostile_per_class=2, out=out)

    assert report.server_errors == 0, out.getvalue()
    assert report.enqueued_for_rejected == 0, out.getvalue()
    assert report.ok, out.getvalue()
    for name in HOSTILE_CLASSES:  # all within the time budget, before and after the signature check
        assert report.classes[f"{name} (unsigned)"].requests > 0, out.getvalue()
        assert report.classes[f"{name} (signed)"].requests > 0, out.getvalue()
    assert report.classes["too many objects (signed)"].requests == 1
    for source in SOURCES:
        assert report.classes[f"schemathesis {source} positive (signed)"].requests > 0, out.getvalue()
    assert sum(report.parser_cases.values()) > 0
