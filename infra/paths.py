"""Where the CDK app finds what it packages. Absolute, so synth works from any working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"
SHARED_LIBRARY = REPO_ROOT / "shared" / "switchyard"
LAMBDA_REQUIREMENTS = REPO_ROOT / "requirements" / "lambda.txt"
LAMBDA_LOCK = REPO_ROOT / "requirements" / "lambda.lock"  # lambda.txt with every transitive dependency pinned

# Lambda code folders, relative to the repository root (also written into template metadata).
INGEST_CODE = "functions/ingest"
WORKER_CODE = "functions/flow_worker"
STEPS_CODE = "functions/flow_steps"
POLLER_CODE = "functions/poller"
