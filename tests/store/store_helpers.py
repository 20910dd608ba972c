"""Helpers shared by the store tests (imported by name: tests/store is on sys.path)."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from trigear.store import LoadResult, Store, StoredJob

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"

StoreFactory = Callable[[], Store]


def _top_conftest() -> ModuleType:
    # tests/conftest.py is imported by pytest under the name "conftest", like
    # tests/store/conftest.py, so it cannot be imported by name; load it by path.
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("trigear_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Skip for a missing peer, or fail where peers are required (tests/conftest.py).
missing: Callable[[str], None] = _top_conftest().missing


def job(n: int, **fields: object) -> StoredJob:
    base = StoredJob(
        handle=b"H:test:%d" % n,
        function=b"resize",
        unique=b"u%d" % n,
        data=b"payload %d" % n,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def reopen(make: StoreFactory) -> LoadResult:
    store = make()
    try:
        return await store.load()
    finally:
        await store.aclose()


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary directory, on its own port."""

    datadir: Path
    port: int
    pg_ctl: str
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.datadir), "-w", "-t", "30", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=off"
        self._ctl("-o", options, "-l", str(self.datadir / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")
