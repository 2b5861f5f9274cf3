"""A throw-away PKI for TLS tests: a CA and a server certificate signed by it.

``make_test_pki(directory)`` runs the ``openssl`` command line tool (EC P-256 keys, valid two
days). The server certificate names ``hosts`` in its subjectAltName: IP addresses as
``IP:`` entries, anything else as ``DNS:`` entries, so a test can make a certificate that
is right for ``127.0.0.1`` and wrong for ``localhost`` (or the other way round).
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")


def _san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"


def make_test_pki(directory: Path, name: str = "test",
                  hosts: Sequence[str] = DEFAULT_HOSTS) -> Pki:
    """A CA and a server certificate for ``hosts`` signed by it (EC P-256, valid two days)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
             "-days", "2", "-subj", f"/CN=mailbot {name} CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    # The CN is not used for host name checks (subjectAltName is); it only labels the cert.
    _openssl("req", *ec, "-keyout", f"{name}-server.key", "-out", f"{name}-server.csr",
             "-subj", f"/CN={hosts[0]}", cwd=directory)
    (directory / f"{name}-server.ext").write_text(
        f"subjectAltName={','.join(_san(h) for h in hosts)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}-ca.pem",
             "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", f"{name}-server.ext", "-out", f"{name}-server.pem", cwd=directory)
    # Dovecot's login processes run as other users; the key is a throw-away test key.
    for path in directory.glob(f"{name}-*"):
        path.chmod(0o644)
    return Pki(directory / f"{name}-ca.pem", directory / f"{name}-server.pem",
               directory / f"{name}-server.key")
