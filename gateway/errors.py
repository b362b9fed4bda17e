"""Every exception badge-gateway raises on purpose, and the exit statuses of `badge-gateway`.

One tree, rooted at `GatewayError`; a caller catches the family it can handle:

    GatewayError
    ├── StartupError               the daemon cannot start; `run` logs one line and exits 1
    │   ├── ConfigError              the configuration, with every problem found in it
    │   ├── BadgeFileError           the badge register cannot be used at all
    │   ├── CredentialError          a private key cannot be used
    │   ├── BootIdError              the kernel's boot id cannot be read (also an OSError)
    │   ├── AlreadyRunningError      another daemon answers on the control socket
    │   ├── JournalLockedError       another process holds the journal
    │   ├── JournalVersionError      the journal was written by a newer release
    │   └── JournalMigrationError    a schema migration failed and was rolled back
    │                                (also a sqlite3.DatabaseError)
    ├── StorageError               the journal could not store a write (disk full, I/O)
    ├── InvalidIdentifier          a NISS, enterprise number, uid... that is not valid
    │                              (also a ValueError, for pydantic's validators)
    ├── ControlError               a control request the daemon refused, or no daemon
    ├── DemoError                  `badge-gateway demo` could not show what it promised
    ├── FleetError                 the fleet's broker cannot be reached or refused us
    │   └── SignedDocumentError      a signed register or command that must not be applied
    ├── SoapEnvelopeError          a SOAP message that cannot be read as one (Checkinatwork)
    ├── WsSecurityError            a request's WS-Security header refused; `refusal` says which
    │                              check (Checkinatwork simulator)
    └── UplinkError                how one call to the ONSS ended, when not with an answer
        ├── RetryableError           try again later (network, 5xx, 429, token trouble)
        │   ├── AmbiguousError         ...but the ONSS may have it: flag, then resend
        │   └── UnauthorizedError      401 a fresh token does not cure, or our credentials
        │                              refused: a configuration matter, retried with backoff
        ├── UnreadableAnswerError    a 2xx whose per-item answers cannot be read: the ONSS
        │   │                        very probably has them; never resent by itself
        │   └── PresenceAnswerError    ...a Checkinatwork (SOAP) answer so
        ├── BadRequestError          400: some item is bad
        ├── PayloadTooLargeError     413: the batch must be smaller
        ├── ForbiddenError           403: scope or permission, a configuration matter
        ├── TokenError               the token endpoint refused us or answered nonsense
        └── NoLookupError            the service cannot say what it holds (CIaO's REST API),
                                     or nothing delivers: a confirmation stays unchecked

The second bases are kept where code relies on them: `BootIdError` is an OSError (reading a
file of /proc failed), `JournalMigrationError` a sqlite3.DatabaseError (a caller that
handles SQLite's errors handles it too; the journal is unchanged), and `InvalidIdentifier` a
ValueError (raised inside pydantic validators, which turn ValueErrors into field errors).

A StartupError with nothing more specific to say wraps an OSError met while starting (a
directory the daemon may not write, a socket it cannot bind).

Each package re-exports the classes of its part (`from gateway.journal import
StorageError`); code inside gateway imports them from here.

Exit statuses (`badge-gateway`): 0 done; 1 failed or refused, the message on stderr says
why (a check that found a problem, a daemon that cannot start or cannot be reached); 2 a
command line argparse cannot read, and nothing else; 3 `tap`: the daemon refused the tap
(unknown badge, repeat...); 130 interrupted (Ctrl-C). install.sh has its own, documented
in its header.

May import: the standard library only. Everything in gateway may import it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # argparse's, for a command line it cannot read; nothing else returns it
EXIT_TAP_REFUSED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class GatewayError(Exception):
    """Anything badge-gateway raises on purpose; the message is fit to show as it is."""


# --- start-up --------------------------------------------------------------------------------


class StartupError(GatewayError):
    """The daemon cannot start: `badge-gateway run` logs why in one line and exits 1."""


class ConfigError(StartupError):
    """A configuration that cannot be used, with every problem found in it."""

    def __init__(self, path: Path | str, errors: Sequence[str]) -> None:
        super().__init__(path, list(errors))
        self.path = path
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join([f"invalid configuration {self.path}:", *(f"  {e}" for e in self.errors)])


class BadgeFileError(StartupError):
    """The badge register cannot be used at all; the message names the file."""


class CredentialError(StartupError):
    """The private key cannot be used; the message says which file and why."""


class BootIdError(StartupError, OSError):
    """The kernel's boot id cannot be read: every registration and evidence entry carries
    it (a power cut is told from a crash by it), so the daemon does not start without it."""


class AlreadyRunningError(StartupError):
    """Another daemon already answers on the control socket."""


class JournalLockedError(StartupError):
    """Another process holds the journal: there is one writer, ever."""


class JournalVersionError(StartupError):
    """The journal was written by a newer release than this one."""


class JournalMigrationError(StartupError, sqlite3.DatabaseError):
    """A schema migration failed; all of them were rolled back (the journal is unchanged)."""


# --- storage, input, control -----------------------------------------------------------------


class StorageError(GatewayError):
    """The journal could not store a write: disk full, read-only, I/O error."""


class InvalidIdentifier(GatewayError, ValueError):  # noqa: N818 (reads as "raise InvalidIdentifier")
    """The text is not a valid identifier; str(error) is a short human reason."""


class ControlError(GatewayError):
    """The daemon could not be reached or refused a request."""


# --- the uplink ------------------------------------------------------------------------------


class UplinkError(GatewayError):
    """A call to the ONSS that ended without an answer for each item."""


class RetryableError(UplinkError):
    """Try again later: `cause` names it for the outage evidence (dns, tcp, tls, timeout,
    http 503, token...), `retry_after` is the server's Retry-After when it gave one."""

    def __init__(self, cause: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail
        self.retry_after = retry_after


class AmbiguousError(RetryableError):
    """The request may have reached the ONSS: a resend may duplicate (flag, then resend)."""


class UnauthorizedError(RetryableError):
    """A 401 that a fresh token did not cure, or the token endpoint refusing our client id
    or key: a scope, certificate or configuration matter. Retried with a growing backoff;
    `status` shows the uplink `unauthorized`."""


class UnreadableAnswerError(UplinkError):
    """A 2xx whose per-item answers cannot be read (not JSON, too large, cut, a wrong count,
    an entry of an unknown shape). The ONSS very probably processed the request, so it is
    never resent by itself: its registrations wait, unconfirmed, for the employer.
    `detail` says why, with an excerpt of the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}, unreadable answer: {detail}")
        self.status = status
        self.detail = detail


class BadRequestError(UplinkError):
    """400: some item is bad; `issues` as the ONSS listed them."""

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        super().__init__(f"400 badRequest with {len(issues)} issue(s)")
        self.issues = issues


class PayloadTooLargeError(UplinkError):
    """413: the batch must be smaller."""


class ForbiddenError(UplinkError):
    """A configuration problem at the ONSS (scope or permission): sending stops."""


class NoLookupError(UplinkError):
    """What the ONSS holds under an id cannot be asked: CIaO's REST service has no such
    call, or the uplink is not running."""


class TokenError(UplinkError):
    """The token endpoint refused us or answered nonsense; `status` 0 when none came,
    `retry_after` the endpoint's Retry-After (seconds) when it gave one."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# --- Checkinatwork SOAP ----------------------------------------------------------------------


class SoapEnvelopeError(GatewayError):
    """Bytes that are not a readable SOAP 1.1 envelope (not XML, a DTD, no Body...): for a
    client, an answer it cannot read; the message says why in one line."""


class WsSecurityError(GatewayError):
    """A WS-Security header refused. `refusal` names the check that failed (a value of
    `gateway.checkinatwork.security.Refusal`), the message says why in one line."""

    def __init__(self, refusal: str, reason: str) -> None:
        super().__init__(f"{refusal}: {reason}")
        self.refusal = refusal
        self.reason = reason


class PresenceAnswerError(UnreadableAnswerError):
    """A Checkinatwork answer whose per-item results cannot be read (not the operation's
    response, a wrong count, an item neither registered nor refused, an id that is no id).
    As its base: the ONSS very probably has the items, never resent by itself. `status` is
    200 unless the caller knows better: SOAP 1.1 answers a readable response so."""

    def __init__(self, detail: str, status: int = 200) -> None:
        super().__init__(status, detail)


# --- the fleet -------------------------------------------------------------------------------


class FleetError(GatewayError):
    """The fleet's broker cannot be reached, refused us, or did not acknowledge; the
    message names the broker or topic and why."""


class SignedDocumentError(FleetError):
    """A signed badge register or command refused (signature, key, version, expiry, site,
    content); the message says which check failed, for status and the fleet's events."""


# --- the demo --------------------------------------------------------------------------------


class DemoError(GatewayError):
    """`badge-gateway demo` could not show what it promises; the message says what failed."""
