"""The engine's one error vocabulary, split by who is at fault.

The MCP and HTTP edges map these once into messages a person can act on; every
other exception is a bug and surfaces as such.
"""

from __future__ import annotations

__all__ = [
    "MageError",
    "UserError",
    "ConfigError",
    "StorageError",
    "RequestError",
    "SchemaError",
    "ContextOverflowError",
    "ModelNotFoundError",
    "ModelLoadError",
    "ModelOutputError",
    "BackendUnavailable",
    "GenerationCancelled",
    "PatternError",
]


class MageError(Exception):
    """Base of every error the engine raises on purpose."""


class UserError(MageError):
    """The caller or the user's configuration is at fault; retrying unchanged will not help."""


class ConfigError(UserError):
    """A settings value or config file is wrong; the message names the file, the key and what is allowed."""


class StorageError(UserError):
    """The disk cannot hold what set-up must write (or refused a write); the message gives the figures."""


class RequestError(UserError):
    """A request is invalid (empty prompt, bad tool definition, unknown pattern...)."""


class SchemaError(RequestError):
    """A tool definition uses a JSON-schema construct the constrainer cannot handle."""


class ContextOverflowError(RequestError):
    """The prompt does not fit the model's context window."""


class ModelNotFoundError(MageError):
    """A role names a model whose files are not on this machine."""


class ModelLoadError(MageError):
    """Model files exist but could not be loaded."""


class ModelOutputError(MageError):
    """A model produced output the engine cannot use; ``raw`` keeps it for the report."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class BackendUnavailable(MageError):
    """A remote endpoint could not be reached, refused the request, or broke off mid-stream."""


class GenerationCancelled(MageError):
    """The caller cancelled the request; generation stopped at a token boundary."""


class DeadlineReached(MageError):
    """A step could not finish before the call's deadline (``deadline_s``): the pattern returns what it has."""

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(message)
        self.step = step


class PatternError(MageError):
    """A pattern step failed; names the pattern, the step and the role. ``__cause__`` is the original."""

    def __init__(self, message: str, *, pattern: str, step: str, role: str) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.step = step
        self.role = role
