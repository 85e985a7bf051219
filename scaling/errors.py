"""Typed errors. Every user-facing failure is a ScalingError subclass with a one-line message."""


class ScalingError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(ScalingError):
    """A sweep config, CLI argument or input file is invalid. The message names file, key and value."""


class DataError(ScalingError):
    """A corpus or token file is missing, empty or unreadable."""


class FitError(ScalingError):
    """A fit could not be made (too few points, optimizer failure, bad input columns)."""


class LaunchError(ScalingError):
    """Jobs could not be submitted or their state could not be read."""


class StorageError(ScalingError):
    """A results file could not be written (disk full, quota, permissions); the message names the path."""
