"""botocore clients, created lazily and shared per process.

botocore directly rather than boto3: boto3 also imports s3transfer (~70 ms of cold start on this
machine) that no Switchyard function uses.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def client(service: str) -> Any:
    return _session().create_client(service, config=_CONFIG)


def reset() -> None:
    """Forget cached clients (tests start moto before creating any)."""
    client.cache_clear()
    _session.cache_clear()
