"""The test topologies in tests/redis_servers.py work as the proxy will use them: Lua on a cluster, failover
behind a sentinel."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisClusterException

from .redis_servers import RedisCluster, RedisSentinel

# Swaps in ARGV[1]: the old KEYS[1] moves to KEYS[2]. Both keys come as KEYS, which the cluster client routes by.
SWAP = """
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], old or '')
return old
"""


def test_cluster_runs_a_script_on_keys_of_one_slot_only(redis_cluster: RedisCluster) -> None:
    redis_cluster.flushall()

    async def scenario() -> None:
        nodes = [redis.cluster.ClusterNode(n["host"], n["port"]) for n in redis_cluster.startup_nodes]
        client = redis.asyncio.RedisCluster(startup_nodes=nodes, decode_responses=True)
        try:
            swap = client.register_script(SWAP)
            await client.set("{k}:a", "1")
            assert await swap(keys=["{k}:a", "{k}:b"], args=["2"]) == "1"
            assert await client.mget("{k}:a", "{k}:b") == ["2", "1"]

            assert key_slot(b"a") != key_slot(b"b")
            # redis-py refuses before sending: the server's CROSSSLOT is never seen.
            with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
                await swap(keys=["a", "b"], args=["2"])
        finally:
            await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_sentinel_client_follows_a_failover(redis_sentinel: RedisSentinel) -> None:
    async def scenario() -> None:
        sentinel = redis.asyncio.Sentinel(redis_sentinel.sentinel_nodes, socket_timeout=1)
        client = sentinel.master_for(redis_sentinel.service_name, socket_timeout=1, decode_responses=True)
        try:
            await client.set("before", "1")
            assert await client.wait(1, 2000) == 1  # on the replica too, so it survives the failover

            old = redis_sentinel.stop_master()
            stopped = time.monotonic()
            failover = asyncio.create_task(asyncio.to_thread(redis_sentinel.wait_for_failover))
            errors: list[tuple[float, str]] = []
            while True:
                try:
                    await client.set("after", "2")
                    break
                except ConnectionError as error:  # MasterNotFoundError is one too
                    errors.append((round(time.monotonic() - stopped, 1), f"{type(error).__name__}: {error}"))
                    assert time.monotonic() - stopped < 20, errors
                    await asyncio.sleep(0.2)
            written = time.monotonic() - stopped
            new = await failover
            print(f"\nfailover done {time.monotonic() - stopped:.1f}", *errors, sep="\n")
            print(f"\nfailover {old} -> {new}; written to the new master {written:.1f} s after "
                  f"the stop; errors meanwhile: {errors[:1]} ... {errors[-1:]} ({len(errors)})")
            assert new != old
            assert await client.mget("before", "after") == ["1", "2"]
            assert redis_sentinel.master_port() == new
        finally:
            await client.aclose()
            for node in sentinel.sentinels:
                await node.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 45))
