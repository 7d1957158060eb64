"""``make dev`` (``switchyard local up``): the local stack kept running, with its AWS services on an endpoint.

moto runs in this process (fast, and the in-process functions need it); a ``ThreadedMotoServer`` beside it
serves the same backends over HTTP, so ``switchyard --local`` and the ``aws`` CLI (``--endpoint-url``) see and
change what the functions see: list dead letters, or ``put-secret-value`` a connection's ``base_url``
elsewhere exactly as docs/infrastructure.md says for a deployed stack (functions re-read secrets within 5
minutes). Where the endpoint listens is written to ``.local-stack/endpoint.json`` for ``--local``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from switchyard_cli.errors import CliError, ExitCode
from switchyard_cli.target import LOCAL_ENDPOINT_FILE, stack_name, write_local_endpoint
from werkzeug.serving import make_server

from switchyard_local.stack import REGION, ROOT, LocalStack
from switchyard_local.webhooks import SAMPLES


@contextmanager
def aws_endpoint(*, port: int = 0, endpoint_file: Path | None = None, stack_name: str = "Switchyard-dev"
                 ) -> Iterator[str]:
    """Serve moto's backends (the running stack's) on 127.0.0.1:``port`` (0: any free port); yields the URL.

    moto's ``ThreadedMotoServer`` binds inside its thread and waits forever when the port is taken, so the
    server is bound here (a taken port fails at once) and only served from a thread."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the console
    try:
        server = make_server("127.0.0.1", port, DomainDispatcherApplication(create_backend_app), threaded=True,
                             request_handler=MotoRequestHandler)
    except OSError as exc:
        raise CliError(f"cannot serve the AWS endpoint on port {port}: {exc.strerror} (give --aws-port)",
                       ExitCode.CONFIGURATION) from None
    thread = threading.Thread(target=server.serve_forever, name="aws-endpoint", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        if endpoint_file is not None:
            write_local_endpoint(endpoint_file, endpoint_url=url, region=REGION, stack=stack_name)
        yield url
    finally:
        if endpoint_file is not None:
            endpoint_file.unlink(missing_ok=True)
        server.shutdown()
        thread.join(timeout=5)


def banner(stack: LocalStack, *, aws_endpoint: str, log: Path) -> str:
    """What ``make dev`` prints (docs/local-stack.md shows it; a test keeps the two alike)."""
    assert stack.base_url is not None and stack.clarity is not None
    url = stack.base_url
    webhook = stack.webhook_url(url, "nopcommerce")
    sample = SAMPLES / "nop_order_b2b.json"
    return f"""Switchyard local stack is running (Ctrl-C to stop).
  webhook URLs     {webhook}
                   {stack.webhook_url(url, "clarity")}   (the Clarity sandbox posts here)
                   {stack.webhook_url(url, "streak")}?event=...   (the Streak sandbox posts here)
                   {stack.webhook_url(url, "quickbooks")}   (the QuickBooks sandbox posts here)
  signing secret   {stack.signing_secret}   (nopcommerce and clarity)
  Streak token     {stack.streak_token}
  AWS endpoint     {aws_endpoint}   (stack {stack_name(stack.stage)}, region {REGION}, any credentials)
  Streak sandbox   {stack.streak.base_url}/_sandbox/state   (what Streak holds)
  Clarity sandbox  {stack.clarity.base_url}/_sandbox/state   (orders, customers, webhooks sent)
  QuickBooks       {stack.quickbooks.base_url}/_sandbox/state   (realm {stack.qbo_realm}: documents, items)
  nopCommerce API  {stack.nopcommerce.base_url}/_sandbox/state   (orders, notes, product stock)
  function logs    {log}

Send a signed webhook:
  .venv/bin/switchyard send {webhook} {sample} --secret {stack.signing_secret}
Operate it as you would a deployed stack (docs/runbooks.md):
  .venv/bin/switchyard status --local
  .venv/bin/switchyard dlq list --local
  aws --endpoint-url {aws_endpoint} --region {REGION} sqs list-queues
Act in the sandboxes as their users would (docs/local-stack.md): place an order in Clarity, drag a box in Streak.
"""


def run(*, port: int = 8080, aws_port: int = 4566, endpoint_file: Path = LOCAL_ENDPOINT_FILE,
        wait: Callable[[LocalStack, str], None] | None = None) -> int:
    """Start the stack and its endpoint, print how to use them, run until Ctrl-C (or until ``wait`` returns)."""
    if not (ROOT / "infra" / "synth.py").is_file():  # it deploys what the checkout's CDK app synthesizes
        raise CliError("the local stack runs from a checkout of Switchyard: `make dev` there", ExitCode.CONFIGURATION)
    log = Path(".local-stack") / "functions.log"
    log.parent.mkdir(exist_ok=True)
    with LocalStack(log_path=log, port=port) as stack, aws_endpoint(
            port=aws_port, endpoint_file=endpoint_file, stack_name=stack_name(stack.stage)) as url:
        stack.run_pollers_in_background()
        print(banner(stack, aws_endpoint=url, log=log), flush=True)
        try:
            if wait is not None:
                wait(stack, url)
            else:
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0
