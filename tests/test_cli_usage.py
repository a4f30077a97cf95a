"""The command line's own mistakes and texts: each small slip is one clean line with a documented exit code, and
the help says what each flag takes."""

import pytest
from click.testing import CliRunner

from dav2_cli.cli import main


def help_text(*command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["image", "folder", "video"])
def test_help_shows_no_empty_bounds(command):
    text = help_text(command)
    assert "--cx" in text and "None" not in text
