"""The ``smarthub`` Typer application and what its commands share (the error console, failing
with one line and an exit status)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from smarthub.logs import LogFormat

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The `smarthub` command. Parses options and calls into the packages; holds no logic.",
)
err = Console(stderr=True)

LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        help="log lines on standard error: text, or json (one object per line: time, level, logger, "
        "message, hub_id/party where relevant)",
    ),
]


def fail(prefix: str, message: str, status: int = 2) -> typer.Exit:
    """One line on standard error (``prefix: message``); the caller raises the returned exit."""
    print(f"{prefix}: {message}", file=sys.stderr)
    return typer.Exit(status)


def first_line(error: Exception) -> str:
    """An exception as one line (an OSError with its file name)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, OSError) and getattr(error, "filename", None):
        text = f"{error.strerror or text}: {error.filename}"
    return text
