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

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from relay.observability.redact import Redactor
from relay.settings import LoggingSettings

__all__ = ["configure_logging", "scrub_addresses"]

_MARK = "_ccguard_handler"
_FIRST_KEYS = ("timestamp", "level", "logger", "event")
# Libraries whose loggers must reach our handler instead of their own.
_ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "mail.log", "asyncio", "py.warnings")
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


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


def scrub_addresses(redactor: Redactor) -> Processor:
    """A processor that hashes every clear address left in an event and puts
    timestamp, level, logger and event first.  Run it right before the renderer."""

    def scrub(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
        ordered.update(event_dict)
        return {str(_clean(k, redactor)): _clean(v, redactor) for k, v in ordered.items()}

    return scrub


def _structure_access_log(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Turn uvicorn's ``client - "GET /path HTTP/1.1" 200`` into fields."""
    args = event_dict.pop("positional_args", ())
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the event
    record = event_dict.get("_record")
    if record is not None and record.name == "uvicorn.access" and len(args) == 5:
        event_dict.update(zip(_ACCESS_FIELDS, args, strict=True))
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
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder(), _structure_access_log],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrub_addresses(redactor),
            renderer,
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
    handler = logging.StreamHandler(out)
    handler.setFormatter(_formatter(settings.format, redactor, out))
    _install_handler(handler, level)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
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
