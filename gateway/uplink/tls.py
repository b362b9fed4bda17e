"""The uplink's TLS context: always verified, against the system's CAs plus an optional
extra bundle (`[uplink] ca_file`). One function, so the daemon's client and `uplink check`
trust exactly the same certificates."""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """A verifying client context. Raises OSError (the file cannot be read) or ssl.SSLError
    (it holds no usable certificate)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context
