"""Private keys: from a file, or from systemd's credentials directory.

The technical user's RSA key is the employer's identity at the ONSS; the Ed25519 key signs
evidence exports. A key file that others may read is refused outright rather than used:
it would mean the key has already leaked on the box.

Whatever is wrong with the file (missing, a directory or a FIFO, unreadable, too big, not
PEM, encrypted, a public key, the wrong key type), the CredentialError raised says which
file and what, in one line, fit for a command's stderr or the daemon's log.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.errors import CredentialError

# A 4096-bit RSA key in PEM is about 3.3 kB; anything this big is not a key file.
MAX_KEY_FILE_BYTES = 64 * 1024

_KINDS: tuple[tuple[type[object], str], ...] = (
    (RSAPrivateKey, "an RSA key"),
    (Ed25519PrivateKey, "an Ed25519 key"),
    (EllipticCurvePrivateKey, "an elliptic-curve (EC) key"),
    (Ed448PrivateKey, "an Ed448 key"),
)


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


def _load_pem(path: Path) -> PrivateKeyTypes:
    data = _read_key_file(path)
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


def _read_key_file(path: Path) -> bytes:
    """The file's bytes, once it is known to be a small regular file only its owner can use."""
    try:
        # Non-blocking: a FIFO put where the key should be must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise CredentialError(f"{path}: cannot open the private key: {_reason(error)}") from error
    try:
        _check_file(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as error:
        raise CredentialError(f"{path}: cannot read the private key: {_reason(error)}") from error
    finally:
        os.close(fd)


def _check_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise CredentialError(f"{path}: is a directory, not a private key file")
    if not stat.S_ISREG(info.st_mode):
        raise CredentialError(f"{path}: not a regular file (a device, FIFO or socket)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise CredentialError(
            f"{path}: {_exposure(mode)} (mode {mode:04o}); refusing it: chmod 600 {path}"
            " and consider the key compromised"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise CredentialError(
            f"{path}: {info.st_size} bytes, too large for a private key file"
            f" (at most {MAX_KEY_FILE_BYTES})"
        )


def _exposure(mode: int) -> str:
    if mode & 0o044:
        return "readable by others"
    if mode & 0o022:
        return "writable by others"
    return "open to others"


def _reason(error: OSError) -> str:
    reason = error.strerror or str(error)
    if isinstance(error, PermissionError):
        reason += f" (read as {_user()}: the file must be that user's, mode 600)"
    return reason


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def _kind(key: PrivateKeyTypes) -> str:
    """'an RSA key', 'an EC key'...: what the file holds instead of the key expected."""
    for kind, name in _KINDS:
        if isinstance(key, kind):
            return name
    return f"a {type(key).__name__}"
