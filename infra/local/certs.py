"""A private certificate authority for the local secure servers, made on this machine at their first start.

TLS is only worth testing with certificates a client really verifies: the servers present
certificates signed by a CA of their own, naming the loopback address they listen on, and
clients trust that CA alone. Keys never leave the state folder and never enter the repository.
Everything is PEM, which Kafka (``ssl.keystore.type=PEM``), Cassandra 5.0
(``PEMBasedSslContextFactory``), librdkafka and Python's ``ssl`` all read as it is.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: what Kafka's PEM store and Cassandra's PEMReader take without a key password.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """A key or password file, mode 0600 from its creation, so it is never readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS)))


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA in ``directory``: ``ca.pem`` (its certificate, what clients trust) and
    ``ca.key`` (0600). Returns the certificate's path."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    write_private(directory / "ca.key", _key_pem(key))
    (directory / "ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return directory / "ca.pem"


def issue(ca_directory: Path, target: Path, name: str, addresses: Sequence[str]) -> Path:
    """A server certificate signed by the CA of ``ca_directory`` that names ``addresses`` (IP SANs,
    what hostname checks compare with), written with its key to one PEM file (0600): the form both
    servers take as a keystore. It may also serve as a client certificate (a Kafka node's, towards
    its controller)."""
    ca_key = cast(ec.EllipticCurvePrivateKey,
                  serialization.load_pem_private_key((ca_directory / "ca.key").read_bytes(), password=None))
    ca_certificate = x509.load_pem_x509_certificate((ca_directory / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(name, ca_certificate.subject, key.public_key())
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))
                                                               for address in addresses]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    write_private(target, _key_pem(key) + certificate.public_bytes(serialization.Encoding.PEM))
    return target
