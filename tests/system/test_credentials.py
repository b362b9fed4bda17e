"""Private key files: every way a key file can be wrong gets a CredentialError that names the
file and the problem in one line. The files are real (real modes, a real directory, a real
FIFO); `bad_key` builds each one, and tests/cli/test_evidence_keys.py runs the commands on
them."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.errors import CredentialError
from gateway.system.credentials import (
    key_path,
    load_private_key,
    load_signing_key,
)
from gateway.system.secrets import MAX_SECRET_FILE_BYTES

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key: PrivateKeyTypes, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _others_readable(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, pem(key), 0o644)


def _group_writable(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, pem(key), 0o620)


def _missing(path: Path, key: PrivateKeyTypes) -> Path:
    return path


def _directory(path: Path, key: PrivateKeyTypes) -> Path:
    path.mkdir(mode=0o700)
    return path


def _fifo(path: Path, key: PrivateKeyTypes) -> Path:
    os.mkfifo(path, 0o600)
    return path


def _empty(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, b"")


def _not_pem(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, b"this is not a key\n\x00\x01binary\n")


def _corrupt_pem(path: Path, key: PrivateKeyTypes) -> Path:
    body = b"-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n"
    return write_key(path, body)


def _public_key(path: Path, key: PrivateKeyTypes) -> Path:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return write_key(path, public)


def _encrypted(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, pem(key, password=b"secret"))


def _wrong_type(path: Path, key: PrivateKeyTypes) -> Path:
    other = ED25519_KEY if isinstance(key, rsa.RSAPrivateKey) else RSA_KEY
    return write_key(path, pem(other))


def _unreadable(path: Path, key: PrivateKeyTypes) -> Path:
    """Mode 000: root reads it anyway, so as root the command runs without CAP_DAC_*
    (tests/cli/test_evidence_keys.py, `as_unprivileged`)."""
    return write_key(path, pem(key), 0o000)


def _too_large(path: Path, key: PrivateKeyTypes) -> Path:
    return write_key(path, pem(key) + b"\n" * MAX_SECRET_FILE_BYTES)


Maker = Callable[[Path, PrivateKeyTypes], Path]

# name -> (how to make the bad file, what the message must say about it)
BAD_KEYS: dict[str, tuple[Maker, str]] = {
    "others-readable": (_others_readable, "readable by others (mode 0644); refusing it: chmod 600"),
    "group-writable": (_group_writable, "writable by others (mode 0620)"),
    "missing": (_missing, "cannot open the private key: No such file or directory"),
    "directory": (_directory, "is a directory, not a private key file"),
    "fifo": (_fifo, "not a regular file"),
    "empty": (_empty, "empty file, not a private key"),
    "not-pem": (_not_pem, "not a PEM file (no -----BEGIN line)"),
    "corrupt-pem": (_corrupt_pem, "not a readable PEM private key"),
    "public-key": (_public_key, "holds no private key"),
    "encrypted": (_encrypted, "the private key is encrypted"),
    "unreadable": (_unreadable, "Permission denied"),
    "too-large": (_too_large, "too large for a private key file"),
}


def bad_key(case: str, directory: Path, key: PrivateKeyTypes) -> tuple[Path, str]:
    """The bad key file of `case` (for a slot that wants `key`'s type), and the message."""
    make, message = BAD_KEYS[case]
    return make(directory / f"{case}.pem", key), message


@pytest.mark.parametrize("case", sorted(set(BAD_KEYS) - {"unreadable"}))
@pytest.mark.parametrize(
    ("load", "key"), [(load_private_key, RSA_KEY), (load_signing_key, ED25519_KEY)]
)
def test_each_bad_key_file_is_named_with_its_problem(
    tmp_path: Path, case: str, load: Callable[[Path], object], key: PrivateKeyTypes
) -> None:
    path, message = bad_key(case, tmp_path, key)

    with pytest.raises(CredentialError) as raised:
        load(path)

    text = str(raised.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_the_wrong_key_type_says_what_was_expected_and_what_was_found(tmp_path: Path) -> None:
    rsa_file = write_key(tmp_path / "rsa.pem", pem(RSA_KEY))
    ed_file = write_key(tmp_path / "ed.pem", pem(ED25519_KEY))
    ec_file = write_key(tmp_path / "ec.pem", pem(ec.generate_private_key(ec.SECP256R1())))

    with pytest.raises(CredentialError, match=r"needs an RSA key \(RS256\), not an Ed25519 key"):
        load_private_key(ed_file)
    with pytest.raises(CredentialError, match=r"needs an RSA key .*, not an elliptic-curve"):
        load_private_key(ec_file)
    with pytest.raises(CredentialError, match="signed with an Ed25519 key, not an RSA key"):
        load_signing_key(rsa_file)
    assert isinstance(load_private_key(rsa_file), rsa.RSAPrivateKey)
    assert isinstance(load_signing_key(ed_file), ed25519.Ed25519PrivateKey)


def test_a_fifo_in_place_of_the_key_does_not_hang(tmp_path: Path) -> None:
    path, _ = bad_key("fifo", tmp_path, RSA_KEY)
    done = threading.Event()

    def load() -> None:
        try:
            load_private_key(path)
        except CredentialError:
            done.set()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    assert done.is_set()


def test_a_bare_name_needs_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(CredentialError, match=r"'onss\.pem' is not an absolute path"):
        key_path("onss.pem")
    key = write_key(tmp_path / "onss.pem", pem(RSA_KEY))
    assert key_path("onss.pem", str(tmp_path)) == key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
