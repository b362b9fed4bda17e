"""The uplink: delivery of the journal's registrations to the ONSS presence-registration
service (CIaO's REST API, docs/onss-api.md).

Modules: `sender` (the loop: batches, backoff, settling each item in the journal),
`client` (one registerInBulk call and its answer, classified), `answers` (an exchange
read without trusting it: streamed, capped, one deadline), `failures` (a call without an
answer, named and classified; the Checkinatwork client's too), `token` (OAuth2 with a
signed JWT), `payload` (a registration as the ONSS reads it), `timing` (what date and time
a registration is sent with), `connectivity` (online or not, and why; the states are
`gateway.models.UplinkState`), `tls` (the one TLS context, always verified), `factory`
(`open_uplink`, the uplink built from the configuration), `check` (`badge-gateway uplink
check`, the onboarding test, step by step). How a call can fail is gateway.errors'
`UplinkError` family.

Importing this package loads httpx, cryptography and tenacity: the daemon imports it only
when the uplink is enabled.

May import: models, errors, identifiers, clock, config, journal, system. Nothing above it.
"""

from gateway.uplink.connectivity import Connectivity
from gateway.uplink.factory import open_uplink
from gateway.uplink.sender import Uplink, UplinkPolicy

__all__ = ["Connectivity", "Uplink", "UplinkPolicy", "open_uplink"]
