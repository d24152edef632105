"""Wires the parts together from settings, starts them and stops them: the only module
that knows every stage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from relay import __version__
from relay.actions import Dispatcher, QuarantineReleaser
from relay.admin import create_admin_app
from relay.admin.report import ReportSource
from relay.credentials.hashing import HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB, UsersFileError
from relay.errors import ConfigError, StoreError
from relay.httpserver import HttpServer
from relay.inspect.domains import DomainMatcher
from relay.milter import MilterContext, MilterListener
from relay.observability.http import CheckResult, observability_routes
from relay.observability.logging import bound_logger, configure_logging
from relay.observability.metrics import Metrics
from relay.observability.redact import Redactor
from relay.quarantine import QuarantineStore, open_store, run_retention
from relay.review.wiring import SelfServiceParts, build_self_service, sender_server
from relay.settings import Settings, parse_listen
from relay.settings_milter import require_a_front
from relay.signals import wait_for_stop_signal
from relay.smtp import FrontContext, SmtpListener
from relay.smtp.auth import SmtpAuthenticator
from relay.smtp.budget import InflightBudget
from relay.smtp.pipeline import InspectingDecider
from relay.smtp.shared_listen import Inherited
from relay.smtp.tls import ServerTls
from relay.startup_checks import (
    event_loop_name,
    warn_proxy_overlap,
    warn_smtp_auth,
    warn_without_admins,
)
from relay.upstream import UpstreamClient

__all__ = ["Relay", "serve"]


class Relay:
    """One running ccguard: SMTP front, upstream, quarantine, admin and metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        log: Any | None = None,
        redactor: Redactor | None = None,
        clock: Callable[[], float] | None = None,
        worker: int | None = None,
        inherited: Inherited | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker  #: [smtp] workers: this one's index (None: one process)
        self._inherited = inherited  #: a worker's SMTP and milter sockets (from the supervisor)
        self.log = log if log is not None else bound_logger("ccguard")
        self.redactor = redactor or Redactor.from_settings(settings.logging)
        self.metrics = Metrics(version=__version__, mode=settings.policy.mode)
        self.metrics.declare_rules((r.action, r.name) for r in settings.policy.rules)
        self.metrics.inflight_limit.set(settings.limits.max_inflight_bytes)
        self.matcher = DomainMatcher(settings.organisation.internal_domains)
        self.upstream = UpstreamClient(
            settings.upstream, local_hostname=settings.smtp.hostname, metrics=self.metrics
        )
        # ``clock`` (tests only): the store's and the undo holds' time, settable.
        self._clock = clock or time.time
        self.store: QuarantineStore = open_store(settings.quarantine, clock=clock)
        self.dispatcher = Dispatcher(
            upstream=self.upstream,
            store=self.store,
            matcher=self.matcher,
            settings=settings,
            log=self.log,
            metrics=self.metrics,
            redact=self.redactor.address,
        )
        self.releaser = QuarantineReleaser(
            self.upstream, self.matcher, log=self.log, redact=self.redactor.address
        )
        self.self_service = self._self_service()
        self.dispatcher.held_hook = self.self_service.holds
        # Two pools: a flood of SMTP AUTH guesses must not make admin logins wait or fail.
        self.hashing = HashingPool()  # SMTP AUTH
        self.admin_hashing = HashingPool()
        self.front = self._front_context()
        require_a_front(settings.smtp.listen, settings.milter.listen)  # else ConfigError
        self.milter = MilterListener(MilterContext(
            settings.milter, self.front.decider, self.dispatcher, self.matcher, self.log,
            self.redactor.address, self.metrics, settings.smtp.max_message_size,
            self.front.budget))  # fmt: skip
        self.listener = SmtpListener(self.front)
        self.tls_listener = SmtpListener(self.front, implicit_tls=True)
        self.http: list[HttpServer] = []
        self._stop_background = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    def _self_service(self) -> SelfServiceParts:
        return build_self_service(
            settings=self.settings, store=self.store, releaser=self.releaser,
            splitter=self.dispatcher.splitter, send_mail=self.dispatcher.notices.send,
            log=self.log, redact=self.redactor.address, count=self.metrics.self_service,
            clock=self._clock, claim_metrics=self.metrics,
        )  # fmt: skip

    def _front_context(self) -> FrontContext:
        settings = self.settings
        return FrontContext(
            settings=settings.smtp,
            upstream=self.upstream,
            decider=InspectingDecider(self.matcher, settings.inspect, settings.policy),
            dispatcher=self.dispatcher,
            log=self.log,
            redact=self.redactor.address,
            metrics=self.metrics,
            budget=InflightBudget(settings.limits.max_inflight_bytes, self.metrics),
            tls=self._server_tls(),
            auth=self._smtp_auth(),
            limits=settings.limits,
            logging=settings.logging,
        )

    def _server_tls(self) -> ServerTls | None:
        smtp = self.settings.smtp
        if smtp.tls_cert is None or smtp.tls_key is None:
            return None
        return ServerTls(smtp.tls_cert, smtp.tls_key)  # ConfigError if unloadable

    def _smtp_auth(self) -> SmtpAuthenticator | None:
        users_file = self.settings.smtp.auth.users_file
        if users_file is None:
            return None
        try:
            users = UserDB(users_file)
        except UsersFileError as exc:
            raise ConfigError([("smtp.auth.users_file", str(exc))]) from None
        throttle = LoginThrottle(global_per_minute=self.settings.smtp.auth.max_failures_per_minute)
        return SmtpAuthenticator(
            users, self.hashing, log=self.log, redact=self.redactor.address,
            throttle=throttle, metrics=self.metrics,
        )  # fmt: skip

    def reload_tls(self) -> bool:
        """Re-read the listener's certificate and key (SIGHUP); False if it failed.

        New connections get the new certificate; sessions in progress keep
        theirs.  On error the old certificate stays in use and the error is logged.
        """
        if self.front.tls is None:
            return True
        try:
            self.front.tls.reload()
        except ConfigError as exc:
            self.log.error("tls reload failed", error=str(exc), detail="old certificate kept")
            return False
        self.log.info("tls reloaded", cert=self.settings.smtp.tls_cert)
        return True

    async def _start_milter(self) -> None:
        """A worker serves the milter socket its supervisor bound; alone, bind it."""
        address, shared = self.settings.milter.address, self._inherited
        if address is not None and shared is not None and shared.milter:
            await self.milter.adopt(address, shared.milter)
        else:
            await self.milter.start(address)  # None: no milter

    async def start(self) -> None:
        """Open the store, start listening; raises ``OSError`` / ``StoreError`` on failure."""
        await self.store.open()
        host, port = parse_listen(self.settings.smtp.listen or "127.0.0.1:0")
        shared = self._inherited
        if shared is not None:
            self.listener.adopt(shared.smtp, shared.board)
            self.tls_listener.adopt(shared.tls, shared.board)
        elif self.settings.smtp.listen:
            await self.listener.start(host, port)
        await self._start_milter()
        if self.settings.smtp.tls_listen and shared is None:
            await self.tls_listener.start(*parse_listen(self.settings.smtp.tls_listen))
        for server in self._http_servers() if not self.worker else []:
            await server.start()
            self.http.append(server)
        if not self.worker:  # the other workers leave these to the first
            self._background.append(asyncio.create_task(self._retention()))
            holds = self.self_service.holds.run(self._stop_background)
            self._background.append(asyncio.create_task(holds))
            warn_without_admins(self.settings.admin, self.log)
        warn_smtp_auth(self.settings.smtp.auth, self.front.auth, self.log)
        warn_proxy_overlap(self.settings.smtp, self.log)
        self.log.info(
            "ccguard started",
            version=__version__,
            smtp_listen=f"{host}:{self.listener.port}" if self.listener.serving else None,
            smtp_tls_listen=self.tls_listen,
            starttls=self.settings.smtp.starttls,
            smtp_auth=self.front.auth is not None,
            http_listen=[s.listen for s in self.http],
            upstream=f"{self.settings.upstream.host}:{self.settings.upstream.port}",
            policy_mode=self.settings.policy.mode,
            rules=len(self.settings.policy.rules),
            event_loop=event_loop_name(),
        )

    @property
    def smtp_port(self) -> int:
        return self.listener.port

    @property
    def tls_listen(self) -> str | None:
        """``host:port`` of the implicit-TLS listener, if any."""
        if not self.tls_listener.serving:
            return None
        host = parse_listen(self.settings.smtp.tls_listen or "")[0]
        return f"{host}:{self.tls_listener.port}"

    def http_port(self, name: str) -> int:
        """The bound port of the ``admin`` or ``metrics`` HTTP server."""
        return next(s.port for s in self.http if s.name == name)

    # -- HTTP ---------------------------------------------------------------

    def _observability(self) -> list[BaseRoute]:
        return list(
            observability_routes(
                self.metrics,
                checks=self._checks(),
                readiness_timeout=self.settings.metrics.readiness_timeout,
                before_render=self.refresh_quarantine_gauges,
            )
        )

    def _http_servers(self) -> list[HttpServer]:
        admin, metrics = self.settings.admin, self.settings.metrics
        servers = []
        if metrics.listen:
            app = Starlette(routes=self._observability())
            servers.append(HttpServer("metrics", app, metrics.listen))
        review_server, sender_page = sender_server(self.self_service, self.settings)
        servers += [review_server] if review_server is not None else []
        if admin.enabled:
            extra = ([] if metrics.listen else self._observability()) + sender_page
            app = create_admin_app(
                settings=admin,
                store=self.store,
                releaser=self.releaser,
                review=self.self_service.review,
                desk=self.self_service.desk,
                users=UserDB(admin.users_file),
                log=self.log,
                extra_routes=extra,
                hashing=self.admin_hashing,
                metrics=self.metrics,
                claim_lease=self.settings.quarantine.claim_lease,
                matcher=self.matcher,
                report=self.report_source(),
            )
            tls = {"ssl_certfile": admin.tls_cert, "ssl_keyfile": admin.tls_key}
            servers.append(HttpServer("admin", app, admin.listen, **tls))
        return servers

    def report_source(self) -> ReportSource:
        """The policy in force and the log hash key, for the evidence report."""
        org = self.settings.organisation
        return ReportSource(self.settings.policy, tuple(org.internal_domains), self.redactor)

    def _checks(self) -> dict[str, Any]:
        async def smtp() -> CheckResult:
            up = self.listener.serving
            return (up, "listening" if up else "not listening")

        async def store() -> CheckResult:
            try:
                await self.store.check_writable()
            except StoreError as exc:
                return (False, str(exc))
            return (True, "writable")

        async def upstream() -> CheckResult:
            started = time.monotonic()
            try:
                await self.upstream.ping()
            except Exception as exc:
                return (False, f"{type(exc).__name__}: {exc}")
            return (True, f"EHLO answered in {time.monotonic() - started:.3f}s")

        fronts: dict[str, Any] = {"smtp": smtp} if self.settings.smtp.listen else {}
        fronts |= {"milter": self.milter.check} if self.settings.milter.listen else {}
        return {**fronts, "store": store, "upstream": upstream}

    async def refresh_quarantine_gauges(self) -> None:
        """Read the quarantine's counts and oldest held message into the gauges."""
        pool_stats = getattr(self.store, "pool_stats", None)  # PostgreSQL only
        if pool_stats is not None:
            self.metrics.set_store_pool(pool_stats())
        try:
            stats = await self.store.stats()
        except StoreError:
            self.metrics.store_error()
            raise
        oldest = stats.oldest_held_at
        self.metrics.set_quarantine(stats.counts, time.time() - oldest if oldest else None)

    async def _retention(self) -> None:
        q, split = self.settings.quarantine, self.settings.split
        await run_retention(self.store, q, split, self.log, self._stop_background)

    # -- stop ---------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, finish transactions in flight (bounded), close everything."""
        grace = self.settings.smtp.shutdown_grace
        self.log.info("ccguard stopping", grace_seconds=grace)
        # Every front stops accepting first, then all drain together: one grace in all,
        # and no front takes new work while another one drains.
        fronts: dict[str, SmtpListener | MilterListener] = {
            "smtp": self.listener, "smtp_tls": self.tls_listener, "milter": self.milter,
        }  # fmt: skip
        for front in fronts.values():
            front.close()
        drained = await asyncio.gather(
            *(f.drain(grace) for f in fronts.values()), return_exceptions=True
        )
        for name, failure in zip(fronts, drained, strict=True):  # one front's fault cuts no other
            if isinstance(failure, BaseException):
                self.log.error("front stop failed", front=name, error=repr(failure))
        self.front.door.close()  # what the door left out of the log is said now
        await self.dispatcher.close()
        for server in reversed(self.http):
            await server.stop()
        self.http.clear()
        self.hashing.close()
        self.admin_hashing.close()
        self._stop_background.set()
        for task in self._background:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await self.upstream.close()
        await self.store.close()
        self.log.info("ccguard stopped")


async def serve(
    settings: Settings,
    *,
    worker: int | None = None,
    ready_fd: int | None = None,
    metrics_dir: str | None = None,
    inherited: Inherited | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; returns the exit code.

    SIGHUP re-reads the listener's TLS certificate and key.  A worker writes one
    byte to ``ready_fd`` once it listens.
    """
    redactor = configure_logging(settings.logging)
    log = bound_logger("ccguard")
    try:
        relay = Relay(settings, log=log, redactor=redactor, worker=worker, inherited=inherited)
        relay.metrics.multiprocess_dir = metrics_dir
    except ConfigError as exc:
        log.error("cannot start", error=str(exc))
        return 2
    try:
        await relay.start()
    except StoreError as exc:
        # Like a bad configuration: the operator must fix the path or the mount.
        relay.log.error("cannot start", error=str(exc))
        print(f"ccguard: cannot start:\n  quarantine.database: {exc}", file=sys.stderr)
        await relay.stop()
        return 2
    except OSError as exc:
        relay.log.error("cannot start", error=str(exc))
        await relay.stop()
        return 1
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, relay.reload_tls)
    if ready_fd is not None:  # a worker: tell the supervisor it listens
        os.write(ready_fd, b"1")
    await wait_for_stop_signal()
    await relay.stop()
    return 0
