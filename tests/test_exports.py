"""The public API is the names listed here, and importing one room of the package does not
drag in the others (``trigear/__init__.py``): the protocol core imports nothing else, a
client program never loads the server, and the server never loads the client side."""

from __future__ import annotations

import subprocess
import sys

import trigear
import trigear.client
import trigear.protocol
import trigear.server

PUBLIC = [
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


def test_the_public_names_are_pinned() -> None:
    assert sorted(trigear.__all__) == sorted(PUBLIC)
    assert len(set(trigear.__all__)) == len(trigear.__all__)


def test_every_public_name_resolves_and_dir_lists_it() -> None:
    for name in trigear.__all__:
        assert getattr(trigear, name) is not None, name
    assert set(trigear.__all__) <= set(dir(trigear))


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(trigear, "WorkData")  # the protocol's packet, not a client update


def test_a_name_means_one_thing_across_the_packages() -> None:
    """A name exported by the top level and by a subpackage is the same object there."""
    for module in (trigear.client, trigear.protocol, trigear.server):
        for name in set(trigear.__all__) & set(module.__all__):
            assert getattr(trigear, name) is getattr(module, name), (module.__name__, name)
    # The client's progress updates do not reuse the protocol's packet names.
    assert not set(trigear.client.__all__) & set(trigear.protocol.__all__)


def _loaded_after(statement: str) -> set[str]:
    """The modules ``statement`` loads in a fresh interpreter (those loaded before it, by
    the interpreter itself or by a coverage measurement of the run, do not count)."""
    code = (
        "import sys\nbefore = set(sys.modules)\n"
        f"{statement}\nprint('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_importing_the_protocol_core_imports_nothing_else() -> None:
    loaded = _loaded_after("import trigear.protocol")
    ours = {m for m in loaded if m.startswith("trigear.")}
    assert all(m.startswith(("trigear.protocol", "trigear._version")) for m in ours), ours
    assert not _top(loaded) & {"trio", "anyio", "sqlite3", "psycopg"}


def test_a_client_program_never_loads_the_server() -> None:
    loaded = _loaded_after(
        "import trigear\nfrom trigear import open_client, Worker, BlockingClient, AdminClient"
    )
    assert not {m for m in loaded if m.startswith(("trigear.server", "trigear.store"))}


def test_the_server_never_loads_the_client_side() -> None:
    loaded = _loaded_after("from trigear import serve_gearman, Server, ServerConfig")
    assert not {m for m in loaded if m.startswith("trigear.client")}
    assert "anyio" not in _top(loaded)
