"""Exceptions the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class FabricError(Exception):
    """A user-facing error: bad input, a missing file, an incompatible checkpoint.

    The message must name the file (and entry, where there is one) and the problem, in one line.
    The CLI prints ``error: <message>`` to stderr and exits with code 1, without a traceback
    unless ``--debug`` is given.
    """


class UsageError(FabricError):
    """A bad command-line option value (``--shard abc``, ``--nms bogus``, ``--set lr=abc``).

    Same one-line message as :class:`FabricError`, exit code 2 (the usage-error code).
    """
