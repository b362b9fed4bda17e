"""Secret files: a private key, a broker password. Read only when the file is a small
regular file that only its owner may use, from a path or from systemd's credentials
directory (LoadCredential=). Every problem is one CredentialError line naming the file.

No cryptography here: the daemon reads its MQTT password without loading it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from gateway.errors import CredentialError

# A 4096-bit RSA key in PEM is about 3.3 kB; anything this big is not a secret file.
MAX_SECRET_FILE_BYTES = 64 * 1024


def key_path(name: str, credentials_directory: str | None = None) -> Path:
    """An absolute path as it is; a bare name inside $CREDENTIALS_DIRECTORY (LoadCredential=)."""
    path = Path(name)
    if path.is_absolute():
        return path
    directory = credentials_directory or os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise CredentialError(
            f"secret {name!r} is not an absolute path and $CREDENTIALS_DIRECTORY is not"
            " set (use LoadCredential= in the unit, or give a full path)"
        )
    return Path(directory) / path


def read_secret_file(path: Path, what: str = "private key", private: bool = True) -> bytes:
    """The file's bytes, once it is known to be a small regular file only its owner can use
    (`private=False`, for a certificate: any mode)."""
    try:
        # Non-blocking: a FIFO put where the key should be must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise CredentialError(f"{path}: cannot open the {what}: {_reason(error)}") from error
    try:
        _check_file(path, os.fstat(fd), what, private)
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise CredentialError(f"{path}: cannot read the {what}: {_reason(error)}") from error
    finally:
        os.close(fd)


def _check_file(path: Path, info: os.stat_result, what: str, private: bool) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise CredentialError(f"{path}: is a directory, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise CredentialError(f"{path}: not a regular file (a device, FIFO or socket)")
    mode = stat.S_IMODE(info.st_mode)
    if private and mode & 0o077:
        raise CredentialError(
            f"{path}: {_exposure(mode)} (mode {mode:04o}); refusing it: chmod 600 {path}"
            f" and consider the {what} compromised"
        )
    if info.st_size > MAX_SECRET_FILE_BYTES:
        raise CredentialError(
            f"{path}: {info.st_size} bytes, too large for a {what} file"
            f" (at most {MAX_SECRET_FILE_BYTES})"
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
