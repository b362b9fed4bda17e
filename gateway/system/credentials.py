"""Private keys: from a file, or from systemd's credentials directory.

The technical user's RSA key is the employer's identity at the ONSS; the Ed25519 key signs
evidence exports. A key file that others may read is refused outright rather than used:
it would mean the key has already leaked on the box.

Whatever is wrong with the file (missing, a directory or a FIFO, unreadable, too big, not
PEM, encrypted, a public key, the wrong key type), the CredentialError raised says which
file and what, in one line, fit for a command's stderr or the daemon's log.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.errors import CredentialError
from gateway.system.secrets import key_path, read_secret_file

__all__ = ["key_path", "load_certificate", "load_private_key", "load_signing_key"]

_KINDS: tuple[tuple[type[object], str], ...] = (
    (RSAPrivateKey, "an RSA key"),
    (Ed25519PrivateKey, "an Ed25519 key"),
    (EllipticCurvePrivateKey, "an elliptic-curve (EC) key"),
    (Ed448PrivateKey, "an Ed448 key"),
)


def load_private_key(path: Path) -> RSAPrivateKey:
    key = _load_pem(path)
    if not isinstance(key, RSAPrivateKey):
        raise CredentialError(
            f"{path}: the ONSS client assertion needs an RSA key (RS256), not {_kind(key)}"
        )
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = _load_pem(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialError(
            f"{path}: evidence manifests are signed with an Ed25519 key, not {_kind(key)}"
        )
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the employer's, for WS-Security). Public, so any
    file mode is accepted; the same one-line errors as for a key."""
    data = read_secret_file(path, what="certificate", private=False)
    if b"PRIVATE KEY-----" in data:  # the key beside it: then the file must be 0600
        read_secret_file(path, what="private key and certificate")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CredentialError(f"{path}: holds no PEM certificate (no BEGIN CERTIFICATE line)")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as error:
        reason = " ".join(str(error).split()).split(". ")[0]
        raise CredentialError(f"{path}: not a readable PEM certificate: {reason}") from error


def _load_pem(path: Path) -> PrivateKeyTypes:
    data = read_secret_file(path)
    if not data.strip():
        raise CredentialError(f"{path}: empty file, not a private key")
    if b"-----BEGIN" not in data:
        raise CredentialError(f"{path}: not a PEM file (no -----BEGIN line), not a private key")
    if b"PRIVATE KEY-----" not in data:
        raise CredentialError(f"{path}: holds no private key (a public key or a certificate?)")
    if b"ENCRYPTED" in data:
        raise CredentialError(
            f"{path}: the private key is encrypted; give it unencrypted (chmod 600 protects it)"
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except UnsupportedAlgorithm as error:
        raise CredentialError(f"{path}: unsupported private key type: {error}") from error
    except (ValueError, TypeError) as error:
        reason = " ".join(str(error).split()).split(". ")[0]  # its first sentence, one line
        raise CredentialError(f"{path}: not a readable PEM private key: {reason}") from error


def _kind(key: PrivateKeyTypes) -> str:
    """'an RSA key', 'an EC key'...: what the file holds instead of the key expected."""
    for kind, name in _KINDS:
        if isinstance(key, kind):
            return name
    return f"a {type(key).__name__}"
