"""Logging and consoles: logs and progress go to stderr, data (``--json``) to stdout."""

from __future__ import annotations

import logging
import sys

from rich.console import Console

#: Human-facing output (tables, summaries, progress): stderr, so stdout stays machine-readable.
console = Console(stderr=True, highlight=False)

LOGGER_NAME = "fabricnms"


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """The package logger (or a child of it)."""
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Route package logs to stderr via rich, markup off (messages may contain ``[...]``)."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = RichHandler(console=console, markup=False, show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def print_json(obj: object) -> None:
    """Write one JSON document to stdout (the only thing ``--json`` commands print there)."""
    import json

    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
