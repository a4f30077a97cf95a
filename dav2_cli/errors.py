"""Errors a user can cause and fix, kept apart from bugs.

Anything raised as `UserError` is printed by the CLI as one line (`dav2: error: ...`) with no traceback, so
its message must name the file or option and the reason. Anything else escaping is a bug and keeps its
traceback. The exit codes are the contract scripts rely on, so they live here, in one place.
"""

EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed (or the one input did); the rest were still processed
EXIT_USAGE = 2  # click's own code for bad flags and arguments
EXIT_SIGINT = 130  # 128 + SIGINT: stopped by Ctrl-C after finishing the item in hand
EXIT_SIGTERM = 143  # 128 + SIGTERM


class UserError(Exception):
    """A bad input, checkpoint, option value or output location, described in one line."""


class UsageError(UserError):
    """A mistake in the command line itself (a flag value, an impossible combination, a model that cannot give
    what was asked): exit 2, before any model loads or any work, and nothing written."""
