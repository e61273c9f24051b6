"""Fingerprint a stream of records on threads, processes or a Dask cluster.

Run: python docs/examples/scaleout.py threads|processes|dask [records]
"""

from __future__ import annotations

import hashlib
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING

from safethreads import FutureGroup, executor_map

if TYPE_CHECKING:
    from collections.abc import Iterator


def records(n: int) -> Iterator[bytes]:
    """The input, produced lazily: it never sits in memory as a whole."""
    for i in range(n):
        yield f"record-{i:07d}".encode()


def fingerprint(record: bytes) -> int:
    """Some CPU-bound work per record: 2,000 rounds of SHA-256."""
    digest = record
    for _ in range(2_000):
        digest = hashlib.sha256(digest).digest()
    return int.from_bytes(digest[:4], "big")


def check_shard(shard: int, n: int) -> int:
    """Count the records of one shard (a fan-out of a few big tasks)."""
    return sum(1 for i in range(n) if i % 4 == shard)


def make_executor(kind: str) -> Executor:
    """The one thing that changes between the three runs."""
    if kind == "threads":
        return ThreadPoolExecutor(2)
    if kind == "processes":
        return ProcessPoolExecutor(2)
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,
    )
    return Client(cluster).get_executor()


def main(kind: str, n: int) -> None:
    executor = make_executor(kind)
    start = time.perf_counter()
    # At most 32 records in flight, whatever the size of the input.
    combined = 0
    for value in executor_map(
        executor, fingerprint, records(n), buffersize=32, timeout=600
    ):
        combined ^= value
    # A few independent checks: every failure is raised, together.
    with FutureGroup(executor, timeout=60) as group:
        shards = [group.submit(check_shard, s, n) for s in range(4)]
    assert sum(f.result() for f in shards) == n
    elapsed = time.perf_counter() - start
    print(f"{kind}: {n} records, fingerprint {combined:08x}, {elapsed:.2f} s")
    executor.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2_000)
