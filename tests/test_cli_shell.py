"""The CLI shell: version, help, error boundary, no torch import for --help/--version."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from fabricnms import __version__
from fabricnms.cli import app

runner = CliRunner()


def test_version_is_eager_and_prints() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fabricnms {__version__}"


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from fabricnms.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['--version']); assert r.exit_code == 0;"
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'cv2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_command_is_usage_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fabricnms", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"fabricnms {__version__}"
