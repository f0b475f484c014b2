"""Errors a user can act on, and warnings about data that works but is probably not meant.

Every message says what is wrong, where (file, CSV line, config key) and what to do; the
CLI prints an error as one line without a traceback and exits with status 2, and a warning
as one line that starts with "warning:".
"""


class DuiitError(Exception):
    """A problem with the user's input or environment, explained for the user."""


class DuiitWarning(UserWarning):
    """Input that duiit accepts but that is probably a mistake (a repeated manifest row, a
    thumbnail-sized image), named with its file and line."""
