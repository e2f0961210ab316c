"""CLI plumbing shared by every command: the error boundary and global state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from fabricnms.errors import FabricError


@dataclass
class CliState:
    """Global flags set by the root callback."""

    debug: bool = False


STATE = CliState()


class FabricGroup(TyperGroup):
    """Turns :class:`FabricError` into ``error: <message>`` on stderr and exit code 1.

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
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
