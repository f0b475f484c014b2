"""Errors a user can act on, and warnings about data that works but is probably not meant.

Every message says what is wrong, where (file, CSV line, config key) and what to do; the
CLI prints an error as one line without a traceback and exits with status 2, and a warning
as one line that starts with "warning:".
"""


class DuiitError(Exception):
    """A problem with the user's input or environment, explained for the user."""


def explain(exc: Exception) -> str:
    """A library's exception as one line (`Type: message`), for a message that names the
    file the library failed on; parsers wrap their messages over several lines."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class DuiitWarning(UserWarning):
    """Input that duiit accepts but that is probably a mistake (a repeated manifest row, a
    thumbnail-sized image), named with its file and line."""
