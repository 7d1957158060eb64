"""nopCommerce: the Web API Backend plugin client, the webhook envelopes, the order poller, stock write-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def poll_source(connection_secret: Mapping[str, Any]) -> Any:
    """The poll source of ``switchyard.polling`` for one shop, from its connection secret."""
    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
    from switchyard.systems.nopcommerce.poller import NopCommerceOrderSource

    return NopCommerceOrderSource(NopCommerceClient(NopCommerceConnection.from_secret(connection_secret)))
