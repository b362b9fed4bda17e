"""The simulator's certificates: a local CA, the HTTPS server certificate, the client identity.

The server certificate is signed by the local CA and names `localhost` and `127.0.0.1`;
a gateway trusts the simulator through the CA file alone. The client identity is the
"technical user" of docs/onss-api.md: an RSA-2048 key and a self-signed certificate that the
simulator registers as a client id (the ONSS only needs the certificate's public key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onss_sim.files import PRIVATE, PUBLIC, write_atomically

VALIDITY = dt.timedelta(days=365)
# Valid since a day before "now", as a real CA's certificate has been for a while: a box
# whose clock is an hour slow after a power cut (a Pi has no RTC) still verifies it.
CLOCK_SKEW = dt.timedelta(days=1)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class PkiFiles:
    """The PEM files of one simulator directory."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> PkiFiles:
        return cls(
            ca_cert=directory / "ca.pem",
            server_cert=directory / "server-cert.pem",
            server_key=directory / "server-key.pem",
            client_cert=directory / "client-cert.pem",
            client_key=directory / "client-key.pem",
        )

    def all_present(self) -> bool:
        paths = (self.ca_cert, self.server_cert, self.server_key, self.client_cert, self.client_key)
        return all(path.is_file() for path in paths)


@dataclass(frozen=True)
class Identity:
    """A private key and its certificate, both PEM."""

    key_pem: bytes
    cert_pem: bytes


def ensure_pki(directory: Path) -> PkiFiles:
    """The PKI files in `directory`, created (all of them, afresh) unless all are there."""
    files = PkiFiles.in_directory(directory)
    if files.all_present():
        return files
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_key, ca_cert)
    client = make_client_identity("badge-gateway technical user")
    write_atomically(files.ca_cert, _cert_pem(ca_cert), PUBLIC)
    write_atomically(files.server_key, _key_pem(server_key), PRIVATE)
    write_atomically(files.server_cert, _cert_pem(server_cert), PUBLIC)
    write_atomically(files.client_key, client.key_pem, PRIVATE)
    write_atomically(files.client_cert, client.cert_pem, PUBLIC)
    return files


def make_client_identity(common_name: str) -> Identity:
    """A fresh RSA-2048 key and a self-signed client certificate (a "technical user")."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name(common_name)
    builder = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    return Identity(_key_pem(key), _cert_pem(builder.sign(key, hashes.SHA256())))


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = _name("ONSS simulator local CA")
    builder = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _server_certificate(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> x509.Certificate:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    builder = (
        _builder(_name("localhost"), ca.subject, key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "badge-gateway ONSS simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
