"""SecretBound under a batch's concurrent entities: the object is built once, not once per thread."""

from __future__ import annotations

import threading
import time

from switchyard.secret_bound import SecretBound


def test_threads_asking_at_once_share_one_build() -> None:
    builds: list[object] = []

    def build(values: object) -> object:
        time.sleep(0.05)  # a client and its schema: long enough for every thread to ask meanwhile
        built = object()
        builds.append(built)
        return built

    bound = SecretBound(lambda _id: {"api_key": "k"}, {"streak": "arn:streak"}, build)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(bound.get())) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(builds) == 1
    assert got == builds * 10
