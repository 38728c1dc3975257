"""The project's one user-error type: input the user can fix (a setting, a path, a missing optional package).

The command line prints a [`UserError`][hypros_lm.errors.UserError]'s message in one line and exits 2; any other exception is a bug and
shows its traceback. Each subclass is also the built-in exception it stands for, so ``except ValueError`` in a
user's script (or ``pytest.raises(FileNotFoundError)``) keeps working.
"""


class UserError(Exception):
    """Bad input, named with its value and the fix."""


class InvalidValue(UserError, ValueError):
    """A setting or argument outside what it accepts."""


class MissingFile(UserError, FileNotFoundError):
    """A path, run folder, checkpoint or data split that is not there."""


class FileInTheWay(UserError, FileExistsError):
    """An output that already exists and would be overwritten."""


class NotWritable(UserError, PermissionError):
    """An output folder that cannot be written."""


class MissingPackage(UserError, ImportError):
    """An optional dependency that is not installed (the message says which extra brings it)."""


class Diverged(UserError, FloatingPointError):
    """Training produced a non-finite loss, gradient norm or parameter norm (the message names the step and the fix)."""


class DamagedFile(UserError, OSError):
    """A file that is no longer what was written (truncated, altered): its checksum differs from the recorded one."""
