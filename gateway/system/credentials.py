"""Private keys: from a file, or from systemd's credentials directory.

The technical user's RSA key is the employer's identity at the ONSS; the Ed25519 key signs
evidence exports. A key file that others may read is refused outright rather than used:
it would mean the key has already leaked on the box.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.errors import CredentialError


def key_path(name: str, credentials_directory: str | None = None) -> Path:
    """An absolute path as it is; a bare name inside $CREDENTIALS_DIRECTORY (LoadCredential=)."""
    path = Path(name)
    if path.is_absolute():
        return path
    directory = credentials_directory or os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise CredentialError(
            f"private key {name!r} is not an absolute path and $CREDENTIALS_DIRECTORY is not"
            " set (use LoadCredential= in the unit, or give a full path)"
        )
    return Path(directory) / path


def load_private_key(path: Path) -> RSAPrivateKey:
    key = _load_pem(path)
    if not isinstance(key, RSAPrivateKey):
        raise CredentialError(f"{path}: the ONSS client assertion needs an RSA key (RS256)")
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = _load_pem(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialError(f"{path}: evidence manifests are signed with an Ed25519 key")
    return key


def _load_pem(path: Path) -> PrivateKeyTypes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise CredentialError(
                f"{path}: readable by others (mode {mode:04o}); refusing it: chmod 600 {path}"
                " and consider the key compromised"
            )
        data = path.read_bytes()
    except OSError as error:
        raise CredentialError(f"{path}: cannot read the private key: {error.strerror}") from error
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise CredentialError(f"{path}: not an unencrypted PEM private key: {error}") from error
