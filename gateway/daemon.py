"""The daemon: readers hand each read to the tap pipeline; the event loop does the rest.

`Daemon.run` is three steps, as uvicorn's server is. `startup`: read the boot id, load the
badge register, open the journal (one writer) and the control socket (gateway.control),
start the background tasks and the readers, tell systemd READY=1. `serve`: a reader thread
runs each tap it reads down the pipeline itself (gateway.tap) while the loop serves the
control socket, polls the badge register, keeps the evidence and pings the watchdog, until
SIGTERM or SIGINT; SIGHUP reloads the badge register. `shutdown`: stop accepting taps, stop
the readers (each finishes the tap in progress), wait for taps injected over the socket,
close the socket and the journal.

The uplink runs on a loop of its own, on a thread at a lower CPU priority
(gateway.system.background), so that a backlog's drain yields the CPU to taps; so does the
fleet link (gateway.fleet.link), when `[mqtt]` is enabled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import signal
import ssl
import stat
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import BadgeRead, Reader
from gateway import __version__
from gateway.attendance import AttendanceRules, Site
from gateway.badges import CP1252_NOTE, BadgeRegisterWatcher, BadgeSite
from gateway.clock import Clock, boot_id
from gateway.config import GatewayConfig
from gateway.control import ControlServer, commands, status
from gateway.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    ControlError,
    CredentialError,
    FleetError,
    NoLookupError,
    StartupError,
    StorageError,
)
from gateway.evidence import Kind
from gateway.feedback import Feedback, TapOutcome, build_outputs, close_outputs
from gateway.journal import Journal
from gateway.models import Channel
from gateway.readers import build_readers
from gateway.system import BackgroundLoop, logs, notify, systemd_notifies, watchdog_interval
from gateway.tap import TapPipeline
from gateway.watch import EvidenceWatch, Retention, log_head

if TYPE_CHECKING:
    import httpx

    from gateway.fleet.link import FleetLink
    from gateway.fleet.signed import SignedRegister
    from gateway.uplink.connectivity import Connectivity
    from gateway.uplink.factory import ServiceFactory
    from gateway.uplink.sender import Uplink
    from gateway.uplink.service import Held

log = structlog.get_logger("daemon")

DRAIN_TIMEOUT = 30.0
STATUS_EVERY = 10.0  # seconds between two looks for systemd's STATUS= line


class Daemon:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        outputs: Sequence[Feedback] | None = None,
        readers: Sequence[Reader] | None = None,
    ) -> None:
        self.config = config
        self.readers = list(readers) if readers is not None else build_readers(config.readers)
        # Outputs built from the configuration are the daemon's to close; given ones are not.
        self._own_outputs = build_outputs(config.feedback, self.readers) if outputs is None else []
        self._outputs: list[Feedback] = [*(outputs or []), *self._own_outputs]
        self._stopping = asyncio.Event()
        self._injected: set[asyncio.Future[TapOutcome]] = set()
        self.accepting = False
        self.started_at = time.time()
        self.journal: Journal | None = None
        self.badges: BadgeRegisterWatcher | None = None
        self.pipeline: TapPipeline | None = None
        self.uplink: Uplink | None = None
        self.uplink_error: str | None = None
        self.clock = Clock(config.clock.sources, config.clock.timesyncd_flag)
        self._control: ControlServer | None = None
        self._background: BackgroundLoop | None = None  # the uplink's loop, when it delivers
        self.fleet: FleetLink | None = None
        self.fleet_error: str | None = None  # why the fleet link could not start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def stop(self) -> None:
        self._stopping.set()

    @property
    def _config_sha256(self) -> str:
        return hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()

    def fleet_status(self) -> dict[str, Any]:
        """Where the fleet link stands, for `status`."""
        if self.fleet is not None:
            return {"enabled": True, **self.fleet.as_json()}
        if self.fleet_error is not None:
            return {"enabled": True, "state": "misconfigured", "cause": self.fleet_error}
        return {"enabled": False}

    @property
    def connectivity(self) -> Connectivity | None:
        """Where delivery stands; None when no uplink delivers (off, or misconfigured)."""
        return None if self.uplink is None else self.uplink.connectivity

    async def run(self) -> None:
        """Start up, serve until SIGTERM or SIGINT, shut down."""
        await self.startup()
        try:
            await self.serve()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Open the journal and the control socket, start the background tasks and the
        readers, tell systemd READY=1. Raises StartupError, having closed what it opened."""
        with _startup_failures():
            journal = await self._open()
            try:
                await self._start(journal)
            except BaseException:
                await self._close()
                raise

    async def serve(self) -> None:
        """Taps run on the readers' threads; the loop serves the socket and the tasks."""
        await self._stopping.wait()

    async def shutdown(self) -> None:
        """Stop taking taps, let those in progress finish, then close everything."""
        notify("STOPPING=1")
        try:
            await self._finish_taps()
        finally:
            await self._close()

    async def _open(self) -> Journal:
        """What must be there to take a tap; nothing to undo when one of them is not."""
        boot_id()  # essential evidence: without it stop here, before opening anything
        site = self.config.site
        badge_site = BadgeSite(site.channel, site.all_declarations)
        self.badges = BadgeRegisterWatcher(self.config.badges.file, badge_site)
        self._report_register()
        storage = self.config.storage
        self.journal = await asyncio.to_thread(
            Journal, storage.journal, max_size_mb=storage.max_size_mb, clock=self.clock.sample
        )
        return self.journal

    async def _start(self, journal: Journal) -> None:
        assert self.badges is not None
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._start_evidence, journal)
        if self.config.mqtt.enabled:
            await asyncio.to_thread(self._use_fleet_register, journal)
        self.pipeline = self._pipeline(journal, self.badges)
        self._control = ControlServer(self.config.control.socket, commands.handlers(self))
        await self._control.start()
        self._tasks = self._start_tasks(journal)
        self._install_signals(asyncio.get_running_loop())
        self.accepting = True
        for reader in self.readers:
            reader.start(self._on_read)
        notify("READY=1")
        log.info(
            "daemon started",
            site=self.config.site.name,
            declaration=self.config.site.declaration,
            journal=str(self.config.storage.journal),
            workers=len(self.badges.current.workers),
            readers=[reader.name for reader in self.readers],
        )

    def _start_tasks(self, journal: Journal) -> list[asyncio.Task[None]]:
        tasks = [
            asyncio.create_task(self._poll_badges(), name="badges"),
            asyncio.create_task(self._evidence_watch(journal).run(), name="evidence"),
        ]
        self._background = self._start_uplink(tasks)
        self.fleet = self._start_fleet(journal)
        interval = watchdog_interval()
        if interval is not None:
            tasks.append(asyncio.create_task(self._watchdog(interval, tasks[:]), name="watchdog"))
        if systemd_notifies():
            tasks.append(asyncio.create_task(self._report_status(), name="status"))
        return tasks

    async def _close(self) -> None:
        """Close what start-up opened: the socket, the uplink, the journal, the outputs."""
        assert self.journal is not None
        if self._control is not None:
            await self._control.close()
        if self._background is not None:  # closes the uplink's HTTP client on its own loop
            await asyncio.to_thread(self._background.close)
        if self.fleet is not None:  # says "offline" while the journal is still open
            await asyncio.to_thread(self.fleet.close)
        await asyncio.to_thread(self._stop_evidence, self.journal)
        await asyncio.to_thread(self.journal.close)
        await asyncio.to_thread(close_outputs, self._own_outputs)
        self._remove_signals(asyncio.get_running_loop())
        log.info("daemon stopped cleanly")

    def _pipeline(self, journal: Journal, badges: BadgeRegisterWatcher) -> TapPipeline:
        site = self.config.site
        attendance = self.config.attendance
        return TapPipeline(
            clock=self.clock,
            badges=lambda: badges.current,
            rules=AttendanceRules(
                site=Site(site.declaration, site.place_of_work, site.tz, site.channel),
                mode=attendance.mode,
                debounce_ns=int(attendance.debounce_seconds * 1e9),
            ),
            journal=journal,
            outputs=self._outputs,
            site_language=site.language,
            uplink_online=self._uplink_online,
        )

    def _start_evidence(self, journal: Journal) -> None:
        assert self.badges is not None
        details = {
            "version": __version__,
            "pid": os.getpid(),
            "config_sha256": self._config_sha256,
            "badges_sha256": self.badges.current.sha256,
            "readers": [reader.name for reader in self.readers],
        }
        try:
            written = journal.start_run(details)
        except StorageError as error:  # taps will say it too; the daemon still starts
            log.error("evidence: cannot record the start", error=str(error))
            return
        if Kind.UNCLEAN_STOP in written:
            log.warning("evidence: the previous run did not stop cleanly (power cut or crash)")
        log_head(journal)

    def _stop_evidence(self, journal: Journal) -> None:
        try:
            journal.stop_run("signal")
        except StorageError as error:
            log.error("evidence: cannot record the clean stop", error=str(error))
            return
        log_head(journal)

    def _evidence_watch(self, journal: Journal) -> EvidenceWatch:
        return EvidenceWatch(
            journal,
            self.readers,
            self.clock.sample,
            heartbeat_seconds=self.config.evidence.heartbeat_seconds,
            clock_source="+".join(self.config.clock.sources),
            unreadable_sources=self.clock.unreadable,
            retention=Retention(
                self.config.evidence.retention_days,
                self.config.storage.max_size_mb,
                self._retention_signer(),
            ),
        )

    def _retention_signer(self) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        """Retention summaries are signed with the export key, when there is one."""
        name = self.config.evidence.signing_key
        if name is None:
            return None
        from gateway.evidence.signing import signed
        from gateway.system.credentials import key_path, load_signing_key

        try:
            key = load_signing_key(key_path(name))
        except CredentialError as error:
            log.error("evidence: retention summaries will not be signed", error=str(error))
            return None
        return lambda summary: signed(summary, key)

    async def held_at_the_onss(self, onss_id: int | str) -> Held | None:
        if self.uplink is None or self._background is None:
            raise NoLookupError("no uplink delivers: nothing can be asked of the ONSS")
        return await asyncio.wrap_future(self._background.submit(self.uplink.held(onss_id)))

    def _uplink_online(self) -> bool | None:
        """For the worker's display, on the tap's thread: reads one attribute the loop sets."""
        if self.connectivity is not None:
            return self.connectivity.online
        return False if self.uplink_error is not None else None  # no delivery: nothing to say

    def _start_uplink(self, tasks: list[asyncio.Task[None]]) -> BackgroundLoop | None:
        """Taps are captured whatever happens here: a bad key only stops delivery."""
        if not self.config.uplink.enabled:
            return None
        # Imported here: a box that does not deliver does not pay for TLS and HTTP in RAM.
        from gateway.uplink import open_uplink

        assert self.journal is not None and self.pipeline is not None
        config = self.config.uplink
        try:
            service = (
                self._checkinatwork() if self.config.site.channel is Channel.CHECKINATWORK else None
            )
            self.uplink, http = open_uplink(config, self.journal, self.pipeline.clock, service)
        except (CredentialError, OSError, ssl.SSLError) as error:
            self.uplink_error = str(error)
            log.error(
                "uplink disabled: cannot load its credentials; taps are still stored",
                error=str(error),
            )
            return None
        background = BackgroundLoop("uplink")
        background.start()
        delivery = background.submit(_deliver(self.uplink, http))
        tasks.append(asyncio.create_task(_awaited(delivery), name="uplink"))
        return background

    def _checkinatwork(self) -> ServiceFactory:
        # Imported here: a CIaO box does not pay for lxml and XML signatures in RAM.
        from gateway.checkinatwork.factory import presence_service

        config = self.config.uplink
        return lambda http, limits: presence_service(config, http, limits)

    def _start_fleet(self, journal: Journal) -> FleetLink | None:
        """Taps are captured whatever happens here: a bad password only stops the link."""
        if not self.config.mqtt.enabled:
            return None
        # Imported here: a box without a fleet does not pay for MQTT in RAM.
        from gateway.fleet.connection import box_access
        from gateway.fleet.link import FleetHooks, FleetLink

        hooks = FleetHooks(
            snapshot=lambda: status.collect(self),
            identity=self._fleet_identity,
            apply_register=self._apply_fleet_register,
            reload_badges=lambda: self._on_loop(self._reload_badges(force=True)),
        )
        try:
            link = FleetLink(self.config.mqtt, box_access(self.config.mqtt), journal, hooks)
        except (FleetError, CredentialError) as error:
            self.fleet_error = str(error)
            log.error("fleet link disabled: taps are still stored", error=str(error))
            return None
        link.start()
        return link

    def _fleet_identity(self) -> dict[str, Any]:
        from gateway.fleet.link import REGISTER_VERSION

        assert self.journal is not None
        version = self.journal.fleet_value(REGISTER_VERSION)
        return {
            "site": self.config.mqtt.site_id,
            "box": self.config.mqtt.box_id,
            "version": __version__,
            "config_sha256": self._config_sha256,
            "status_interval_seconds": self.config.mqtt.status_interval_seconds,
            "badges_version": None if version is None else int(version),
        }

    def _use_fleet_register(self, journal: Journal) -> None:
        """At start: the register the fleet gave last time, if it is still as written."""
        from gateway.fleet.registers import register_path, stored_register

        assert self.badges is not None
        path = stored_register(register_path(journal.path), journal)
        if path is not None:
            self.badges.follow(path)
            self.badges.refresh(force=True)
            log.info("badge register: the fleet's", file=str(path))

    def _apply_fleet_register(self, register: SignedRegister) -> None:
        """On the fleet link's thread: keep the register, then load it as a reload would."""
        from gateway.fleet.registers import register_path, store_register

        assert self.journal is not None and self.badges is not None
        path = register_path(self.journal.path)
        store_register(path, register.csv_text, self.journal)
        self.badges.follow(path)
        self._on_loop(self._reload_badges(force=True))

    def _on_loop(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` on the daemon's loop from another thread, and wait for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def _on_read(self, read: BadgeRead) -> None:
        """What a reader calls, on its own thread, for every card presentation."""
        assert self.pipeline is not None
        try:
            self.pipeline.handle(read)
        except Exception:  # a bug must not take the reader thread down with it
            log.exception("tap failed", reader=read.reader, badge=read.uid)

    async def tap(self, read: BadgeRead) -> TapOutcome:
        """Inject a read as if a reader had produced it; returns once feedback was given."""
        if not self.accepting or self.pipeline is None:
            raise ControlError("the daemon is not accepting taps (starting or stopping)")
        future = asyncio.ensure_future(asyncio.to_thread(self.pipeline.handle, read))
        self._injected.add(future)
        future.add_done_callback(self._injected.discard)
        return await future

    async def _finish_taps(self) -> None:
        """Readers finish the tap in progress, taps injected over the socket get their
        answer, then the background tasks are cancelled."""
        self.accepting = False
        log.info("stopping: finishing the taps in progress")
        await asyncio.gather(*(asyncio.to_thread(reader.stop) for reader in self.readers))
        if self._injected:
            _, unfinished = await asyncio.wait(self._injected, timeout=DRAIN_TIMEOUT)
            if unfinished:
                log.error("stopping with taps unfinished", taps=len(unfinished))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watchdog(self, interval: float, vital: list[asyncio.Task[None]]) -> None:
        """Ping systemd while all is well; a dead task, or a tap stuck (say, in an fsync
        that never returns) for longer than the watchdog period, stops the pings."""
        assert self.pipeline is not None
        while not any(task.done() for task in vital):
            busy_since = self.pipeline.busy_since
            if busy_since is not None and time.monotonic() - busy_since > 2 * interval:
                log.error("a tap has been stuck for too long: no more watchdog pings")
            else:
                notify("WATCHDOG=1")
            await asyncio.sleep(interval)
        log.error("a vital task ended: no more watchdog pings", tasks=[t.get_name() for t in vital])

    async def _report_status(self) -> None:
        """systemd's STATUS= line, refreshed while it changes; a failed snapshot is logged
        and tried again, never the end of the daemon."""
        last = ""
        while True:
            try:
                line = status.summary(await asyncio.to_thread(status.collect, self))
            except Exception:
                log.exception("status line for systemd")
            else:
                if line != last:
                    notify(f"STATUS={line}")
                    last = line
            await asyncio.sleep(STATUS_EVERY)

    async def _poll_badges(self) -> None:
        while True:
            await asyncio.sleep(self.config.badges.poll_seconds)
            await self._reload_badges(force=False)

    async def _reload_badges(self, *, force: bool) -> None:
        assert self.badges is not None
        before = self.badges.last_error
        changed = await asyncio.to_thread(self.badges.refresh, force=force)
        if changed is not None:
            log.info(
                "badge register reloaded",
                file=str(changed.path),
                workers=len(changed.workers),
                errors=len(changed.errors),
                sha256=changed.sha256,
            )
            self._report_register()
            await self._record_badges_changed()
        elif self.badges.last_error and self.badges.last_error != before:
            log.error(
                "badge register unusable, keeping the previous one", error=self.badges.last_error
            )

    async def _record_badges_changed(self) -> None:
        assert self.badges is not None and self.journal is not None
        register = self.badges.current
        details = {
            "sha256": register.sha256,
            "workers": len(register.workers),
            "refused_lines": len(register.errors),
        }
        try:
            await asyncio.to_thread(self.journal.record, Kind.BADGES_CHANGED, details)
        except StorageError as error:
            log.error("evidence: cannot record the badge register change", error=str(error))

    def _report_register(self) -> None:
        assert self.badges is not None
        register = self.badges.current
        for error in register.errors:
            log.warning("badge register line refused", error=str(error))
        if register.encoding != "utf-8":
            log.warning("badge register " + CP1252_NOTE, file=str(register.path))
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(register.path.stat().st_mode)
            if mode & 0o077:
                log.warning(
                    "badge register is readable by others: it holds national numbers",
                    file=str(register.path),
                    mode=f"{mode:04o}",
                    fix=f"chmod 600 {register.path}",
                )

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: loop.create_task(self._reload_badges(force=True))
        )

    @staticmethod
    def _remove_signals(loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


async def _deliver(uplink: Uplink, http: httpx.AsyncClient) -> None:
    """On the uplink's own loop: deliver until cancelled, then close the HTTP client there."""
    try:
        await uplink.run()
    finally:
        await http.aclose()


async def _awaited(future: concurrent.futures.Future[None]) -> None:
    """A task of the daemon's loop that ends when `future` does; cancelling it cancels the
    coroutine behind `future` on its own loop."""
    await asyncio.wrap_future(future)


def run_daemon(config: GatewayConfig) -> int:
    """The `run` command: configure logging, run until SIGTERM; 0 on a clean stop, 1 when
    the daemon cannot start (one log line says why)."""
    logs.configure(fmt=config.logging.format, level=config.logging.level)
    try:
        with _startup_failures():
            daemon = Daemon(config)
        asyncio.run(daemon.run())
    except StartupError as error:
        log.error("cannot start", error=str(error))
        return EXIT_FAILURE
    return EXIT_OK


@contextlib.contextmanager
def _startup_failures() -> Iterator[None]:
    """An OSError while starting (a directory the daemon may not write, a socket it cannot
    bind) is a start-up failure like the others."""
    try:
        yield
    except StartupError:
        raise
    except OSError as error:
        raise StartupError(str(error)) from error
