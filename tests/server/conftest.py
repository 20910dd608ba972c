"""Fixtures for server tests: a trigear Server in the test's nursery, and peers that talk
to it over in-memory streams (so pytest-trio's autojump clock drives every timer)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trigear.server import Server, ServerConfig

from ..memory_peer import Connect, Peer


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(job_handle_prefix="test")


@pytest.fixture
async def server(nursery: trio.Nursery, config: ServerConfig) -> Server:
    srv = Server(config)
    await nursery.start(srv.serve)
    return srv


@pytest.fixture
def connect(server: Server) -> Connect:
    async def _connect(ip: str = "127.0.0.1", **_: Any) -> Peer:
        peer = Peer(server.connect_in_memory(ip))
        await trio.testing.wait_all_tasks_blocked()
        return peer

    return _connect
