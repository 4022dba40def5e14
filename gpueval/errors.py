"""Named errors, each mapped to one exit status of the command-line contract.

=====================  ====  ==============================================
error                  exit  meaning
=====================  ====  ==============================================
:class:`UsageError`     2    bad command line (or ``--device gpu`` without one)
:class:`Rejected`       3    the submission is invalid (format or content)
:class:`TruthError`     4    the ground truth or the configuration is unusable
=====================  ====  ==============================================

Messages are one line a person can act on: say what was found, what was expected, and where.
"""

from __future__ import annotations


class GpuevalError(Exception):
    """Base class; ``exit_code`` is the process exit status for this error."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


class UsageError(GpuevalError):
    exit_code = 2


class Rejected(GpuevalError):
    """The submission cannot be scored: the organiser records it with this reason."""

    exit_code = 3


class TruthError(GpuevalError):
    exit_code = 4


ConfigError = TruthError
