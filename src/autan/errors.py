"""Errors a user can act on.

Each message names the value that was wrong, the limit or the expectation, and where it came
from (a file, a tensor), so nobody has to read a traceback from deep inside torch.
"""


class AutanError(Exception):
    """Base class of every error autan raises on purpose."""


class CheckpointError(AutanError, ValueError):
    """A checkpoint file is missing, truncated, corrupt, or holds something we do not support."""

    def __init__(self, path: object, message: str, tensor: str | None = None):
        self.path = str(path)
        self.tensor = tensor
        where = f"{self.path}: tensor '{tensor}'" if tensor else self.path
        super().__init__(f"{where}: {message}")


class UnsupportedModelError(CheckpointError):
    """The checkpoint describes an architecture or an option this model core does not implement."""


class ContextLengthError(AutanError, ValueError):
    """A sequence is longer than the model or its cache allows."""


class ChatFormatError(AutanError, ValueError):
    """A conversation the model's chat format cannot express (roles out of order, a bad tool, ...)."""


class NotFound(AutanError):
    """What was asked for is not there, or not the caller's (404); `param`, if given, names the
    field that asked for it."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class Limited(AutanError):
    """An account at one of its limits (429)."""


class Conflict(AutanError):
    """What was asked clashes with what is in use (409)."""


class Invalid(AutanError):
    """A request's field is wrong (400); `param` names it."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param
