"""CLI plumbing shared by every command: the error boundary and global state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from fabricnms.errors import FabricError, UsageError

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import UsageError as ClickUsageError


@dataclass
class CliState:
    """Global flags set by the root callback."""

    debug: bool = False


STATE = CliState()


class FabricGroup(TyperGroup):
    """Turns :class:`FabricError` into ``error: <message>`` on stderr and exit code 1 (2 for a
    :class:`UsageError`), and a command's option parsing errors into one such line, exit 2.

    With ``--debug`` the exception propagates with its traceback instead.
    """

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # keep registration order in --help

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FabricError as exc:
            if STATE.debug:
                raise
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except ClickUsageError as exc:  # a bad option value of a command: one line too
            if STATE.debug:
                raise
            where = f" (see fabricnms {exc.ctx.info_name} --help)" if exc.ctx else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


def _one_line(exc: FabricError) -> str:
    """The message; for one re-raised by a DataLoader worker (which appends the worker's
    traceback), the original message, the last line without its ``module.Type: `` prefix."""
    text = str(exc).strip()
    if "\n" not in text:
        return text
    last = text.splitlines()[-1]
    name = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(name) :] if last.startswith(name) else last
