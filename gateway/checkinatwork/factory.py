"""`presence_service`: the Checkinatwork service built from the configuration, for
gateway.uplink's `open_uplink` (the same HTTP client, limits, key handling and sender as
CIaO's)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx

from gateway.checkinatwork.client import PresenceClient
from gateway.checkinatwork.security import load_identity
from gateway.checkinatwork.service import CheckinatworkService
from gateway.config import UplinkConfig
from gateway.system.credentials import key_path
from gateway.uplink.answers import AnswerLimits
from gateway.uplink.service import Service

# A SOAP answer is bulkier than a JSON one: ~700 bytes an item, ~140 KB for 200 items
# (more when pretty-printed, as the specification's examples are).
MIN_ANSWER_BYTES = 1024 * 1024


def presence_service(
    config: UplinkConfig, http: httpx.AsyncClient, limits: AnswerLimits
) -> Service:
    """Raises CredentialError: the key, the certificate, or the two not being a pair or the
    certificate not valid now (every request would be refused)."""
    assert config.certificate is not None  # the configuration requires it for Checkinatwork
    identity = load_identity(key_path(config.private_key), config.certificate, datetime.now(UTC))
    limits = replace(limits, max_bytes=max(limits.max_bytes, MIN_ANSWER_BYTES))
    return CheckinatworkService(PresenceClient(http, config.presence_url, identity, limits))
