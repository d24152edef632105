"""structlog set-up: one JSON object per line on stdout (or a console format).

Every log line goes through one stdlib handler whose
:class:`structlog.stdlib.ProcessorFormatter` renders it, so lines from ccguard
(structlog), uvicorn's access and error logs, aiosmtpd, asyncio and Python
warnings all come out in the same format.  Timestamps are ISO 8601 in UTC.

Defence in depth: the last processor before rendering replaces anything that
looks like an email address in any field (message, values, dict keys,
tracebacks) with its keyed hash.  Callers must still hash addresses themselves
(:class:`~relay.observability.redact.Redactor`); the net exists for the line
somebody forgot, such as a library's debug message or an exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from relay.observability.redact import Redactor
from relay.settings import LoggingSettings

__all__ = ["bound_logger", "configure_logging", "scrub_addresses", "scrubbed_json"]

_MARK = "_ccguard_handler"
_FIRST_KEYS = ("timestamp", "level", "logger", "event")
# Libraries whose loggers must reach our handler instead of their own.
_ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "mail.log", "asyncio", "py.warnings")
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
# A sender page's address carries its signed link (the only credential for it): the
# log keeps the message id, never the expiry, nonce and signature.
_SENDER_LINK = re.compile(r"^(/r/[^/.?]*)[^/?]*")


_PLAIN = frozenset({type(None), bool, int, float})


def _clean(value: Any, redactor: Redactor) -> Any:
    # Exact-type checks first: a transaction line has ~50 values, nearly all
    # plain str/int/None, and isinstance against unions cost more than the rest.
    kind = type(value)
    if kind is str:
        return redactor.scrub(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redactor.scrub(value)
    if isinstance(value, Mapping):
        return {_clean(k, redactor): _clean(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, redactor) for v in value]
    if isinstance(value, bytes):
        return redactor.scrub(value.decode("utf-8", "backslashreplace"))
    return redactor.scrub(str(value))


def _first_keys_first(event_dict: EventDict) -> dict[str, Any]:
    ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _scrubbed(event_dict: EventDict, redactor: Redactor) -> dict[str, Any]:
    ordered = _first_keys_first(event_dict)
    return {str(_clean(k, redactor)): _clean(v, redactor) for k, v in ordered.items()}


def scrub_addresses(redactor: Redactor) -> Processor:
    """A processor that hashes every clear address left in an event and puts
    timestamp, level, logger and event first.  Run it right before the renderer."""

    def scrub(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        return _scrubbed(event_dict, redactor)

    return scrub


def _refuse(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def scrubbed_json(redactor: Redactor) -> Processor:
    """The JSON renderer with :func:`scrub_addresses` before it, in one step.

    Gives exactly ``JSONRenderer(ensure_ascii=False)`` of the scrubbed event,
    but checks the rendered text instead of walking every value first (an
    event's own keys are strings, its keyword arguments): with
    ``ensure_ascii=False`` JSON escapes only quotes, backslashes and control
    characters, so ``@`` and ``%40`` appear in the text if and only if some
    key or string value, at any depth, holds one, and only then is there
    anything to scrub.  A line that holds one, or a value JSON does not know
    (which the net turns into its ``str``), takes the walk and is rendered again,
    exactly as before.
    """
    render = structlog.processors.JSONRenderer(ensure_ascii=False)
    encode = json.JSONEncoder(ensure_ascii=False, default=_refuse).encode

    def scrub_and_render(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        text: str | None
        try:
            text = encode(_first_keys_first(event_dict))
        except (TypeError, ValueError):  # not plain JSON (a key too), or circular
            text = None
        if text is None or "@" in text or "%40" in text:
            return str(render(logger, name, _scrubbed(event_dict, redactor)))
        return text

    return scrub_and_render


class _CallerlessLogger:
    """The stdlib logger of a structlog logger, minus the caller look-up.

    ``Logger._log`` looks up the calling file, line and function for every
    record (structlog's logger class walks its frames to do so, ~2 µs a line);
    no format here shows them.  The record is then made and handled exactly
    as ``_log`` does when that look-up is off: same handlers, filters, levels.
    """

    __slots__ = ("_logger", "name")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.name = logger.name

    def _log(self, level: int, msg: Any, extra: Mapping[str, object] | None) -> None:
        logger = self._logger
        if logger.isEnabledFor(level):
            where = ("(unknown file)", 0)
            record = logger.makeRecord(
                self.name, level, *where, msg, (), None, "(unknown function)", extra
            )
            logger.handle(record)

    def debug(self, msg: Any, *, extra: Mapping[str, object] | None = None) -> None:
        self._log(logging.DEBUG, msg, extra)

    def info(self, msg: Any, *, extra: Mapping[str, object] | None = None) -> None:
        self._log(logging.INFO, msg, extra)

    def warning(self, msg: Any, *, extra: Mapping[str, object] | None = None) -> None:
        self._log(logging.WARNING, msg, extra)

    def error(self, msg: Any, *, extra: Mapping[str, object] | None = None) -> None:
        self._log(logging.ERROR, msg, extra)

    def critical(self, msg: Any, *, extra: Mapping[str, object] | None = None) -> None:
        self._log(logging.CRITICAL, msg, extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def _logger_factory() -> Callable[..., _CallerlessLogger]:
    # Its naming (the calling module's, if no name): this module's frame, the
    # factory below, is one more to skip on the way to the caller.
    named = structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__])

    def factory(*args: Any) -> _CallerlessLogger:
        return _CallerlessLogger(named(*args))

    return factory


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stdlib stream handler, without its report of a line that failed.

    ``Handler.handleError`` prints the failed record's message and arguments to
    stderr: the event before the address safety net ran, so addresses in clear.
    ccguard says only that a line was lost, and from which logger."""

    def handleError(self, record: logging.LogRecord) -> None:
        failure = type(sys.exc_info()[1]).__name__
        sys.stderr.write(f"ccguard: a log line from {record.name} was lost ({failure})\n")


def _structure_access_log(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Turn uvicorn's ``client - "GET /path HTTP/1.1" 200`` into fields."""
    args = event_dict.pop("positional_args", ())
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the event
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access" and len(args) == 5:
        event_dict.update(zip(_ACCESS_FIELDS, args, strict=True))
        event_dict["path"] = _SENDER_LINK.sub(r"\1.(link)", str(event_dict["path"]))
        event_dict.pop("message", None)  # the formatted line again, set by an earlier handler
        event_dict["event"] = "http_request"
    return event_dict


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]


def _formatter(fmt: str, redactor: Redactor, stream: TextIO) -> logging.Formatter:
    last: list[Processor]
    if fmt == "console":
        last = [scrub_addresses(redactor), structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    else:
        last = [scrubbed_json(redactor)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder(), _structure_access_log],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *last,
        ],
    )


def _install_handler(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ROUTED:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    # aiosmtpd logs every connection and command at INFO; ccguard writes its own
    # one line per transaction, so aiosmtpd speaks up only for warnings unless debugging.
    if level > logging.DEBUG:
        logging.getLogger("mail.log").setLevel(max(level, logging.WARNING))


def configure_logging(
    settings: LoggingSettings, stream: TextIO | None = None, *, redactor: Redactor | None = None
) -> Redactor:
    """Route all logging through structlog to ``stream`` (default stdout).

    Safe to call again (the previous handler is replaced).  Returns the
    :class:`Redactor` used by the safety net (``redactor`` if given, else one
    from ``settings``); pass it on so the SMTP path hashes with the same key.
    If that key is random, one warning saying so is logged here.
    """
    redactor = redactor if redactor is not None else Redactor.from_settings(settings)
    level: int = getattr(logging, settings.level.upper())
    out = stream if stream is not None else sys.stdout
    handler = _Handler(out)
    handler.setFormatter(_formatter(settings.format, redactor, out))
    _install_handler(handler, level)
    # No format here shows a record's thread, process or process name; looking
    # them up costs every record (ours and the libraries') about 1 µs.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=_logger_factory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    if redactor.ephemeral:
        structlog.get_logger("relay.observability").warning(
            "hash_key_unset",
            detail="[logging] hash_key is not set: address hashes use a random key for this "
            "process only and will not match `ccguard hash` or other runs",
        )
    return redactor


def bound_logger(name: str) -> Any:
    """A structlog logger bound now, for a long-lived object's hot path.

    ``structlog.get_logger`` gives a lazy proxy that builds a new bound logger
    on every call (a few µs per line); this one is built once, with the
    level and processors of the last :func:`configure_logging`.  Where the
    lines go is still decided per line (the root handler).  Before any
    configuration it is the lazy proxy: bound then, a long-lived object would
    keep structlog's defaults (console lines on stdout, no address net)."""
    proxy = structlog.get_logger(name)
    return proxy.bind() if structlog.is_configured() else proxy
