"""The commands of `archive-daemon`, a module per group.

cli.py names each command's function here as "module:function" and imports it only when
that command runs, so that parsing a command line (and `--help`) loads no library that
only some commands need.
"""


class UsageError(Exception):
    """A command line that cannot be carried out as given."""
