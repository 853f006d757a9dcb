"""Redis through Sentinel: the sentinel list both environments parse, the gateway's and the Rasa side's client
factories (a plain Redis exactly as before without sentinels), the variables the stack passes on, and a real
failover (a primary SIGKILLed, its replica promoted by three sentinels) that both kinds of client ride out."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import redis
import redis.asyncio
from redis.sentinel import SentinelConnectionPool

from hotline_domain.redis_spec import (
    DEFAULT_MASTER,
    FAILOVER_RETRIES,
    FAILOVER_WAIT_S,
    GATEWAY_VARS,
    NO_SENTINELS,
    RASA_VARS,
    Sentinels,
    parse_address,
)
from voice_gateway import redis_link
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.stack import action_server_process, free_port, gateway_process, rasa_server_process
from voice_gateway.testing.sentinels import SentinelCluster

THREE = "127.0.0.1:26379, 10.0.0.2:26380,sentinel-c"
URL = "redis://:s3cret@10.9.9.9:6390/3"


# --- the sentinel list ---
def test_addresses_with_and_without_a_port_and_in_brackets() -> None:
    assert parse_address("10.0.0.2:26380") == ("10.0.0.2", 26380)
    assert parse_address(" sentinel-c ") == ("sentinel-c", 26379)
    assert parse_address("[::1]:26381") == ("::1", 26381)
    assert parse_address("[fe80::2]") == ("fe80::2", 26379)


@pytest.mark.parametrize("bad", [":26379", "host:port", "host:0", "host:65536", "[]:1"])
def test_a_bad_address_says_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match="sentinel"):
        parse_address(bad)


def test_a_list_names_the_primary_and_nothing_is_no_sentinel() -> None:
    sentinels = Sentinels.parse(THREE, " ")
    assert sentinels.addresses == (("127.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379))
    assert sentinels.master == DEFAULT_MASTER and sentinels
    assert not Sentinels.parse(" , ", "hotline") and not NO_SENTINELS


def test_the_two_environments_read_what_the_other_writes() -> None:
    sentinels = Sentinels.parse(f"{THREE},[::1]:26390", "site-a")
    for names in (GATEWAY_VARS, RASA_VARS):
        assert Sentinels.from_env(sentinels.environ(names), names) == sentinels
    assert NO_SENTINELS.environ(RASA_VARS) == {"REDIS_SENTINELS": "", "REDIS_SENTINEL_MASTER": ""}


def test_settings_read_the_sentinels_once() -> None:
    env = {"REDIS_URL": URL, "HOTLINE_REDIS_SENTINELS": THREE, "HOTLINE_REDIS_SENTINEL_MASTER": "site-a"}
    assert Settings.from_env(env).redis_sentinels == Sentinels.parse(THREE, "site-a")
    assert Settings.from_env({}).redis_sentinels == NO_SENTINELS
    with pytest.raises(ValueError):
        Settings.from_env({"HOTLINE_REDIS_SENTINELS": "host:port"})


# --- the gateway's factory ---
def _kwargs(client: redis.Redis | redis.asyncio.Redis) -> dict:
    kept = ("host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout")
    return {k: v for k, v in client.connection_pool.connection_kwargs.items() if k in kept}


async def test_without_sentinels_a_client_is_the_one_from_url_as_before() -> None:
    sync = redis_link.connect_sync(URL, NO_SENTINELS, socket_timeout=5)
    assert _kwargs(sync) == _kwargs(redis.Redis.from_url(URL, socket_timeout=5))
    assert "socket_connect_timeout" not in _kwargs(sync) and not isinstance(
        sync.connection_pool, SentinelConnectionPool
    )
    plain = redis_link.connect(URL, NO_SENTINELS, socket_timeout=2, socket_connect_timeout=2)
    assert _kwargs(plain) == _kwargs(redis.asyncio.Redis.from_url(URL, socket_timeout=2, socket_connect_timeout=2))
    await plain.aclose()


async def test_with_sentinels_a_client_asks_them_for_the_primary_and_retries_a_lost_connection() -> None:
    sentinels = Sentinels.parse(THREE, "site-a")
    for client in (
        redis_link.connect_sync(URL, sentinels, socket_timeout=5),
        redis_link.connect(URL, sentinels, socket_timeout=2, socket_connect_timeout=2),
    ):
        pool = client.connection_pool
        assert pool.service_name == "site-a" and pool.is_master
        given = _kwargs(client)
        assert (given["db"], given["password"], "host" in given) == (3, "s3cret", False), "the URL's host is unused"
        retry = pool.connection_kwargs["retry"]
        assert retry.get_retries() == FAILOVER_RETRIES
        assert pool.connection_kwargs["retry_on_error"] == [redis.ConnectionError], "a timeout is not retried"
        asked = [_kwargs(s) for s in pool.sentinel_manager.sentinels]
        assert [(a["host"], a["port"]) for a in asked] == list(sentinels.addresses)
        assert {a["socket_timeout"] for a in asked} == {redis_link.SENTINEL_TIMEOUT_S}


def _rasa_side() -> ModuleType:
    """dialogue/redis_link.py (the Rasa side's factory), loaded here from its file."""
    spec = importlib.util.spec_from_file_location("dialogue_redis_link", PROJECT_ROOT / "dialogue" / "redis_link.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rasa_side_is_its_plain_client_or_the_named_primary() -> None:
    rasa_side = _rasa_side()
    assert not rasa_side.SENTINELS, "REDIS_SENTINELS is not set in the test environment"
    plain = rasa_side.client("10.9.9.9", 6390, db=3, password="s3cret", socket_timeout=2)
    assert _kwargs(plain) == _kwargs(redis.Redis(host="10.9.9.9", port=6390, db=3, password="s3cret", socket_timeout=2))
    named = rasa_side.client("10.9.9.9", 6390, sentinels=Sentinels.parse(THREE), db="1", password="", socket_timeout=10)
    assert named.connection_pool.service_name == DEFAULT_MASTER
    assert (_kwargs(named)["db"], _kwargs(named)["socket_timeout"], "host" in _kwargs(named)) == (1, 10, False)


# --- what the stack passes on ---
def test_the_stack_passes_the_sentinels_to_every_process(tmp_path: Path) -> None:
    prefix = tmp_path / "rasa-env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "rasa").touch()  # RasaEnv only checks that it is there
    settings = replace(
        Settings(), var_dir=tmp_path, redis_url=URL, redis_sentinels=Sentinels.parse(THREE, "site-a"), rasa_env=prefix
    )
    rasa = RasaEnv(settings)
    for process in (
        action_server_process(settings, rasa, URL, 5055),
        rasa_server_process(settings, rasa, URL, 5005, tmp_path / "model.tar.gz", "token"),
    ):
        assert Sentinels.from_env(process.env or {}, RASA_VARS) == settings.redis_sentinels
    gateway = gateway_process(settings, URL, "http://127.0.0.1:5005", 8080, "token")
    assert Sentinels.from_env(gateway.env or {}, GATEWAY_VARS) == settings.redis_sentinels
    without = gateway_process(replace(settings, redis_sentinels=NO_SENTINELS), URL, "http://x", 8080, "token")
    assert (without.env or {})["HOTLINE_REDIS_SENTINELS"] == ""


# --- a real failover ---
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    cluster = SentinelCluster(tmp_path / "sentinel")
    cluster.start()
    yield cluster
    cluster.stop()


async def test_both_clients_ride_out_the_primary_killed(cluster: SentinelCluster) -> None:
    asyncio_client = redis_link.connect(cluster.url, cluster.sentinels, socket_timeout=2, socket_connect_timeout=2)
    sync_client = redis_link.connect_sync(cluster.url, cluster.sentinels, socket_timeout=5)
    plain = redis.Redis.from_url(cluster.url, socket_timeout=1)
    await asyncio_client.set("before", "1")
    sync_client.set("sync", "1")
    assert plain.get("before") == b"1"
    killed = cluster.kill_primary()
    await asyncio_client.set("after", "2")  # late, not failed
    written = time.monotonic()
    assert sync_client.incr("sync") == 2, "the replica had the write from before the kill"
    assert written - killed < FAILOVER_WAIT_S
    assert cluster.named_primary() == cluster.replica_port
    on_replica = redis.Redis(port=cluster.replica_port)
    assert (on_replica.get("before"), on_replica.get("after")) == (b"1", b"2")
    with pytest.raises(redis.ConnectionError):
        plain.get("before")  # a client of the old primary alone has nowhere to go
    await asyncio_client.aclose()


async def test_no_primary_to_be_found_fails_a_command_after_the_failover_wait() -> None:
    nowhere = Sentinels((("127.0.0.1", free_port()), ("127.0.0.1", free_port())))
    asyncio_client = redis_link.connect(URL, nowhere, socket_timeout=2, socket_connect_timeout=2)
    sync_client = redis_link.connect_sync(URL, nowhere, socket_timeout=5)
    started = time.monotonic()
    failed = await asyncio.gather(asyncio_client.ping(), asyncio.to_thread(sync_client.ping), return_exceptions=True)
    took = time.monotonic() - started
    assert all(isinstance(error, redis.ConnectionError) for error in failed), failed
    assert FAILOVER_WAIT_S - 0.5 < took < FAILOVER_WAIT_S + 1.5, took
    await asyncio_client.aclose()
