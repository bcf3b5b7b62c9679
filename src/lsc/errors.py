"""Errors the user can fix. The CLI prints them as one line (`error: ...`) and exits with code 2."""


class LscError(Exception):
    """Base class: a message fit to show the user as is, on one line."""


class ConfigError(LscError):
    """A configuration key, value or file is wrong."""


class CapabilityError(LscError):
    """A scheme needs a capability the chosen backend lacks."""


class ModelUnavailableError(LscError):
    """Model weights are missing; the message names the model and how to make it available."""


class LscWarning(UserWarning):
    """Something was skipped, not failed: the CLI prints it as one line (`warning: ...`)."""
