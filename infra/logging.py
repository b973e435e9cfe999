"""Logs for every process, one line per event, with the role and the correlation id (bound
per request or per record) on each line.

Two renderers, both structlog's own: JSON lines for anything that collects logs (a file, a
pipe, a container runtime) and a readable console rendering for a person at a terminal. The
choice is made once at start (`BUTTERFLY_LOG_FORMAT`: `auto` looks at whether stderr is a
terminal). Stdlib loggers (aiokafka, uvicorn, SQLAlchemy) go through the same renderer, so a
collector never sees two formats from one process.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "console", "json"]
Rendering = Literal["console", "json"]
LOG_FORMAT_VARIABLE = "BUTTERFLY_LOG_FORMAT"
"""Where the format is read from, and how the dev supervisor hands its choice down."""
HANDLER_NAME = "butterfly"
"""Names the stdlib handler configured here, so configuring again replaces only it."""


def chosen_rendering(log_format: str, stream: TextIO) -> Rendering:
    """`console` or `json`: as asked, or for `auto` console exactly when `stream` is a
    terminal (a person reads it) and JSON lines otherwise (a program reads it)."""
    if log_format == "console":
        return "console"
    if log_format == "json":
        return "json"
    if log_format != "auto":
        raise ValueError(f"log format must be auto, console or json, not {log_format!r}")
    return "console" if _is_terminal(stream) else "json"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(
    role: str,
    level: str = "INFO",
    log_format: str = "auto",
    *,
    stream: TextIO | None = None,
) -> Rendering:
    """Route structlog and stdlib logging to `stream` (stderr by default) in one rendering;
    returns the rendering chosen."""
    out = sys.stderr if stream is None else stream
    rendering = chosen_rendering(log_format, out)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO

    def add_role(
        logger: object, method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("role", role)
        return event

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_role,
        structlog.processors.add_log_level,
    ]
    rendered: list[structlog.typing.Processor]
    if rendering == "json":
        shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        rendered = [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        shared.append(structlog.processors.TimeStamper(fmt="%H:%M:%S.%f", utc=False))
        rendered = [
            structlog.processors.StackInfoRenderer(),
            structlog.dev.ConsoleRenderer(colors=_is_terminal(out)),
        ]
    structlog.configure(
        processors=[*shared, *rendered],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.name = HANDLER_NAME
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendered],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    return rendering
