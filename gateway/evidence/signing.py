"""Ed25519 signatures over a document's canonical encoding: export manifests and retention
summaries carry `public_key` (raw, hex) and `signature` (over the rest, hex).

Imported only where something is signed or checked: cryptography costs the daemon RAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.evidence.chain import canonical


def signed(document: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The document with `public_key` and an Ed25519 `signature` over the rest."""
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    unsigned = {**document, "public_key": public}
    return {**unsigned, "signature": key.sign(canonical(unsigned)).hex()}


def signature_problems(document: Mapping[str, Any], pinned: str | None, name: str) -> list[str]:
    """What is wrong with `document`'s signature (nothing: an empty list). Unsigned is
    fine unless a key is `pinned` (hex): then it must be signed, by that key."""
    signature, key_hex = document.get("signature"), document.get("public_key")
    if signature is None:
        return [f"{name} is not signed, and a key was given"] if pinned else []
    if pinned is not None and pinned.lower() != str(key_hex).lower():
        return [f"{name} is signed by key {key_hex}, not by the expected {pinned}"]
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(key_hex))).verify(
            bytes.fromhex(str(signature)), canonical(unsigned)
        )
    except (InvalidSignature, ValueError):
        return [f"{name} was changed after it was signed: its signature does not hold"]
    return []
