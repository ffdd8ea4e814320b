"""`python -m apex.worker --queue NAME --consumer ID`: a queue worker with the standard handlers.

Handlers queue their effects on the worker's transaction (see apex.mq):
- `record`: append `body["value"]` to the key's log (`mq:{queue}:log:{key}`);
- `slow`: the same after `body["seconds"]` (a long job, to see a worker die mid-way);
- `flaky`: fails its first `body["fail_times"]` attempts, then records;
- `poison`: always fails (it ends in the dead-letter stream).

`slow`, `flaky` and `poison` note every attempt as it starts, failed ones included, in
`mq:{queue}:tries:{message id}`: "consumer attempt unix-time", so who ran a message, how
often and when can be read back.
"""

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from apex.mq import Handler, Queue, Worker


def handlers(queue: Queue) -> dict[str, Handler]:
    async def record(msg: dict[str, Any], tx: Pipeline) -> None:
        tx.rpush(f"mq:{queue.name}:log:{msg['key']}", str(msg["body"].get("value", msg["id"])))

    async def note(msg: dict[str, Any]) -> None:  # outside the transaction: failures count
        entry = f"{msg['consumer']} {msg['attempt']} {time.time():.6f}"
        await queue.redis.rpush(f"mq:{queue.name}:tries:{msg['id']}", entry)

    async def slow(msg: dict[str, Any], tx: Pipeline) -> None:
        await note(msg)
        await asyncio.sleep(float(msg["body"].get("seconds", 1.0)))
        await record(msg, tx)

    async def flaky(msg: dict[str, Any], tx: Pipeline) -> None:
        await note(msg)
        if msg["attempt"] <= int(msg["body"].get("fail_times", 1)):
            raise RuntimeError(f"transient failure on attempt {msg['attempt']}")
        await record(msg, tx)

    async def poison(msg: dict[str, Any], tx: Pipeline) -> None:
        await note(msg)
        raise ValueError("this message can never be processed")

    return {"record": record, "slow": slow, "flaky": flaky, "poison": poison}


async def serve(url: str, name: str, consumer: str, lease_ms: int) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    queue = Queue(client, name)
    await queue.setup()
    worker = Worker(queue, consumer, handlers(queue), lease_ms=lease_ms)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the job at hand, then stop
        loop.add_signal_handler(sig, worker.stop)
    await worker.refresh_leases()
    print(f"worker {consumer} ready, partitions {sorted(worker.owned)}", flush=True)
    try:
        await worker.run()
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apex.worker")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument(
        "--lease-ms",
        type=int,
        default=2000,
        help="partition lease; a dead worker's partitions wait this long for an heir",
    )
    args = parser.parse_args(argv)
    import os  # noqa: PLC0415

    url = args.redis or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    asyncio.run(serve(url, args.queue, args.consumer, args.lease_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
