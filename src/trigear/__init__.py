"""trigear: a Gearman job server, client and worker library on Trio.

The public API, in one place (``tests/test_exports.py`` pins it):

* the client side (:mod:`trigear.client`, on anyio): :func:`open_client`,
  :class:`Client`, :class:`JobStream`, the progress updates, :class:`Worker` and the
  :class:`Job` a worker function gets, the :class:`ClientStatistics` and
  :class:`WorkerStatistics` snapshots, and the errors;
* for code that is not async, :class:`BlockingClient` (and the
  :class:`BlockingJobStream` it streams with); for the admin protocol,
  :func:`open_admin_client` and :class:`AdminClient`;
* the embeddable server (:mod:`trigear.server`, on Trio): :func:`serve_gearman`,
  :class:`Server`, :class:`ServerConfig`, the :class:`ServerStatistics` that
  ``Server.statistics()`` returns, and :func:`open_store` for a durable store;
* :class:`Priority`, and the sans-IO protocol core as :mod:`trigear.protocol`.

Names are imported on first use, so ``import trigear.protocol`` loads the protocol core
and nothing else (no anyio, no trio), and a client program never imports the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import protocol
    from .client import (
        Client,
        ClientStatistics,
        ConnectionLost,
        DataUpdate,
        GearmanError,
        Job,
        JobException,
        JobFailed,
        JobFunction,
        JobStatus,
        JobStream,
        NoServerAvailable,
        ServerError,
        StatusUpdate,
        Update,
        WarningUpdate,
        Worker,
        WorkerStatistics,
        open_client,
    )
    from .client.admin import AdminClient, open_admin_client
    from .client.blocking import BlockingClient, BlockingJobStream
    from .protocol.packets import Priority
    from .server import Server, ServerConfig, ServerStatistics, serve_gearman
    from .store import open_store

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Client",
            "ClientStatistics",
            "ConnectionLost",
            "DataUpdate",
            "GearmanError",
            "Job",
            "JobException",
            "JobFailed",
            "JobFunction",
            "JobStatus",
            "JobStream",
            "NoServerAvailable",
            "ServerError",
            "StatusUpdate",
            "Update",
            "WarningUpdate",
            "Worker",
            "WorkerStatistics",
            "open_client",
        ),
        "trigear.client",
    ),
    **dict.fromkeys(("AdminClient", "open_admin_client"), "trigear.client.admin"),
    **dict.fromkeys(("BlockingClient", "BlockingJobStream"), "trigear.client.blocking"),
    **dict.fromkeys(
        ("Server", "ServerConfig", "ServerStatistics", "serve_gearman"), "trigear.server"
    ),
    "open_store": "trigear.store",
    "Keepalive": "trigear._keepalive",
    "Priority": "trigear.protocol.packets",
}

__all__ = [
    "AdminClient",
    "BlockingClient",
    "BlockingJobStream",
    "Client",
    "ClientStatistics",
    "ConnectionLost",
    "DataUpdate",
    "GearmanError",
    "Job",
    "JobException",
    "JobFailed",
    "JobFunction",
    "JobStatus",
    "JobStream",
    "Keepalive",
    "NoServerAvailable",
    "Priority",
    "Server",
    "ServerConfig",
    "ServerError",
    "ServerStatistics",
    "StatusUpdate",
    "Update",
    "WarningUpdate",
    "Worker",
    "WorkerStatistics",
    "__version__",
    "open_admin_client",
    "open_client",
    "open_store",
    "protocol",
    "serve_gearman",
]


def __getattr__(name: str) -> Any:
    if name == "protocol":
        return importlib.import_module("trigear.protocol")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trigear' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
