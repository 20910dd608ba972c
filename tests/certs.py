"""Certificates for the TLS tests: a private CA (trustme), a server certificate for
127.0.0.1 and localhost, client certificates by identity, and PEM files of each for
programs that take paths (the server's command line, gear, geard)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trustme

from trigear.server.tls import server_ssl_context

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Pki:
    """A CA and the certificates it issued, written under ``folder``."""

    folder: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    _clients: dict[str, trustme.LeafCert] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = self.ca.issue_cert("127.0.0.1", "localhost", common_name="gearman-server")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.server.private_key_and_cert_chain_pem.write_to_path(self.folder / "server.pem")

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_file(self) -> Path:
        """The server's key and certificate chain in one PEM file."""
        return self.folder / "server.pem"

    def client(self, name: str, *alt_names: str) -> trustme.LeafCert:
        """A client certificate whose common name is ``name`` (SANs: ``alt_names``)."""
        if name not in self._clients:
            leaf = self.ca.issue_cert(*(alt_names or (f"{name}.clients.test",)), common_name=name)
            self._clients[name] = leaf
            leaf.private_key_and_cert_chain_pem.write_to_path(self.folder / f"{name}.pem")
        return self._clients[name]

    def client_files(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) files of client ``name``: one file holds both."""
        self.client(name)
        path = self.folder / f"{name}.pem"
        return path, path

    def server_context(self, *, mutual: bool = True) -> ssl.SSLContext:
        return server_ssl_context(self.server_file, None, self.ca_file if mutual else None)

    def client_context(self, name: str | None = None) -> ssl.SSLContext:
        """A client context trusting the CA, showing client ``name``'s certificate."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if name is not None:
            self.client(name).configure_cert(context)
        return context
