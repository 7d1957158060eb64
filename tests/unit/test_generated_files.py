"""Files generated from the envelope models stay current (``make generate`` rewrites them)."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate
from switchyard_local import codegen, openapi

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_validators_committed_equal_generated():
    for name, code in codegen.generated().items():
        committed = codegen.TARGET / name
        assert committed.is_file(), f"{committed} missing: run make generate"
        assert committed.read_text() == code, f"{committed} is stale: run make generate"


def test_ingest_validators_cover_every_modelled_event():
    from switchyard.envelopes import EVENT_TYPES
    from switchyard.sources import event_models
    from switchyard.validators import validator

    assert {s: set(t) for s, t in EVENT_TYPES.items()} == {s: set(m) for s, m in event_models().items()}
    assert all(validator(s, t) for s, types in EVENT_TYPES.items() for t in types)


def test_openapi_document_committed_equals_generated_and_is_valid():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == openapi.document(), "docs/openapi.json is stale: run make generate"
    validate(committed)


def test_ingest_cold_start_path_imports_no_pydantic_or_yaml():
    import subprocess
    import sys

    code = ("import sys, switchyard.compose, switchyard.ingest, switchyard.envelopes;"
            "print(sorted({'pydantic', 'yaml', 'boto3'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
