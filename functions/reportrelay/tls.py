"""How a connection checks its vendor's certificate: the public roots, a private CA added to them, or not
at all (which is said, as a warning, every time the connection is opened)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import requests.certs
from cryptography import x509

from reportrelay.config import Connection, SecretResolver
from reportrelay.errors import ConfigurationError
from reportrelay.observability import logger

#: Bundles are written here once per process and content (Lambda's /tmp, or the machine's temp folder).
BUNDLE_FOLDER = Path(tempfile.gettempdir()) / "reportrelay-ca"


def tls_verification(connection: Connection, secrets: SecretResolver) -> bool | str:
    """What ``requests`` takes as ``verify``: True, False, or the path of a bundle with the private CA."""
    if not connection.verify_tls:
        logger.warning(
            f"connection {connection.name}: TLS certificate verification is OFF (verify_tls: false). "
            "Anyone on the network path can read the credentials and change the reports; give the "
            "vendor's CA as ca_bundle instead",
            extra={"connection": connection.name},
        )
        return False
    if connection.ca_bundle is None:
        return True
    field = f"connections.{connection.name}.ca_bundle"
    pem = secrets.read_text(connection.ca_bundle, field)
    check_certificates(pem, field)
    return str(_bundle_file(pem))


def check_certificates(pem: str, field: str) -> int:
    """How many certificates a PEM text holds; ConfigurationError when it holds none or cannot be read."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigurationError(
            f"{field}: holds no PEM certificate (expected '-----BEGIN CERTIFICATE-----' blocks; a DER file "
            "converts with: openssl x509 -inform der -in ca.cer -out ca.pem)"
        )
    try:
        return len(x509.load_pem_x509_certificates(pem.encode("utf-8")))
    except ValueError as error:
        raise ConfigurationError(f"{field}: a certificate in it cannot be read ({error})") from None


def _bundle_file(pem: str) -> Path:
    """The public roots plus the private CA, as one file named by its content (written once, atomically).

    The public roots stay: a vendor's redirect to a CDN or object store (``redirect_hosts``) is signed by
    a public CA, as it would be for a machine with the private CA installed in its trust store.
    """
    roots = Path(requests.certs.where()).read_text(encoding="utf-8")
    bundle = f"{roots.rstrip()}\n{pem.strip()}\n"
    path = BUNDLE_FOLDER / f"{hashlib.sha256(bundle.encode('utf-8')).hexdigest()[:32]}.pem"
    if not path.exists():
        BUNDLE_FOLDER.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=BUNDLE_FOLDER, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(bundle)
        os.replace(temporary, path)
    return path
