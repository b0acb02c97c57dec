"""Throwaway certificates for TLS tests, made with the `openssl` command line."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCerts:
    ca: Path        # the CA certificate that signed the server certificate
    cert: Path      # the server certificate (SAN: 127.0.0.1, localhost)
    key: Path       # the server key


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
         "-subj", f"/CN=chargeamps-bridge test {name}", "-keyout", str(key), "-out", str(cert),
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         cwd=directory)
    return cert, key


def make_server_certs(directory: Path) -> ServerCerts:
    """A CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""
    ca_cert, ca_key = make_ca(directory, "ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr), cwd=directory)
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert), cwd=directory)
    # The broker may drop privileges (root -> mosquitto): let it read its key.
    for p in (directory, ca_cert, cert, key):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return ServerCerts(ca=ca_cert, cert=cert, key=key)
