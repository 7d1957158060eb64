"""``switchyard``: the operator's command line (``pip install switchyard[cli]``).

Shipped with the library but never bundled into the Lambda layer (``infra/layer.py`` bundles
``shared/switchyard`` only) and never imported by a Lambda: it is the operator's side of the same stack.
It talks to a deployed stack through boto3 (profile, region, stack or stage) or to ``make dev``'s local
endpoint, and finds every resource through the template's ``switchyard:*`` metadata, so it names no
external system: flows, sources and connections come from the catalog.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    try:
        return version("switchyard")
    except PackageNotFoundError:  # a checkout used without ``pip install -e .``
        return "0+unknown"
