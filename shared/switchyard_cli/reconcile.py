"""``switchyard reconcile``: a period's shop orders against what their flow made of them: the accounting
documents (the month-end close) or the CRM's deals.

Thin: the comparisons are ``switchyard.pairs.nopcommerce_quickbooks_reconcile`` and
``switchyard.pairs.shop_streak_reconcile``; this module finds the clients through the system registry and,
with ``enqueue``, queues the missing orders' events with the poller's ids (so nothing can be created twice).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def reconcile_flow(flow_name: str, start: datetime, end: datetime, *, secret_arns: Mapping[str, str], table: str,
                   queue_url: str, enqueue: bool, secrets: Any, sqs: Any) -> int:
    """Print the report; exit status 1 if anything is missing, extra or different."""
    from switchyard import registry
    from switchyard.aws.sqs import SqsQueues
    from switchyard.catalog import load_catalog
    from switchyard.compose import AwsAdapters
    from switchyard.pairs.nopcommerce_quickbooks_reconcile import missing_events, reconcile
    from switchyard.polling import QueueingPublisher
    from switchyard.systems.quickbooks.order_mapping import load_order_mapping

    catalog = load_catalog()
    flow = catalog.flows[flow_name]
    adapters = AwsAdapters(flow, table=table, connection_secret_arns=secret_arns)

    def client(connection: str) -> Any:
        secret = dict(json.loads(secrets.get_secret_value(SecretId=secret_arns[connection])["SecretString"]))
        system = catalog.connections[connection].system
        return registry.system(system).connection.client(secret, connection, adapters)

    shop_name = shop_connection(catalog, flow)
    if flow.target in DEAL_TARGETS:
        return _reconcile_deals(flow, start, end, shop=client(shop_name), crm=client(flow.connection),
                                queue_url=queue_url, enqueue=enqueue, sqs=sqs)
    shop, books = client(shop_name), client(flow.connection)
    report = reconcile(shop, books, load_order_mapping(flow.mapping_document), created_from=start, created_to=end)
    print("\n".join(report.lines()))
    if enqueue and report.of("missing"):
        events = missing_events(shop, report, start, end, datetime.now(UTC))
        routes = {event.event_type: {flow.name: queue_url} for event in events}
        QueueingPublisher(source=flow.source, routes=routes, publisher=SqsQueues(sqs))(events)
        print(f"queued {len(events)} event(s) of the missing orders on {flow.name}", file=sys.stderr)
    return 1 if report.findings else 0


DEAL_TARGETS = ("streak",)
DEAL_SOURCES = ("nopcommerce", "clarity")


def _reconcile_deals(flow: Any, start: datetime, end: datetime, *, shop: Any, crm: Any, queue_url: str,
                     enqueue: bool, sqs: Any) -> int:
    from switchyard.aws.sqs import SqsQueues
    from switchyard.pairs import shop_streak_reconcile as deals
    from switchyard.polling import QueueingPublisher
    from switchyard.systems.streak.deal_mapping import load_deal_mapping

    mapping = load_deal_mapping(flow.mapping_document)
    read = deals.nopcommerce_orders if flow.source == "nopcommerce" else deals.clarity_orders
    orders = read(shop, start, end, datetime.now(UTC))
    report = deals.reconcile_deals(orders, crm.list_boxes(crm.connection.pipeline_key), mapping)
    print("\n".join(report.lines()))
    if enqueue and report.of("missing"):
        events = deals.missing_events(orders, report, mapping, flow.events)
        routes = {event_type: {flow.name: queue_url} for event_type in flow.events}
        QueueingPublisher(source=flow.source, routes=routes, publisher=SqsQueues(sqs))(events)
        print(f"queued {len(events)} event(s) of the missing orders on {flow.name}", file=sys.stderr)
    return 1 if report.findings else 0


def shop_connection(catalog: Any, flow: Any) -> str:
    """The connection the flow's source is read through: its poll's, else the flow's own to that system."""
    source = catalog.sources[flow.source]
    if source.poll is not None:
        return str(source.poll.connection)
    return next(name for name in flow.connections if catalog.connections[name].system == flow.source)
