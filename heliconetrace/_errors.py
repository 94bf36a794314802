"""Exceptions raised by heliconetrace.

    HeliconeTraceError
    ├── ConfigurationError    (also a ValueError) invalid setting or environment variable
    └── MetadataError         (also a ValueError) invalid span option, property or bound value

Both are raised at the call that received the bad value. Nothing else in the toolkit raises into
the caller's code: delivery failures are logged, never raised.
"""

from __future__ import annotations


class HeliconeTraceError(Exception):
    """Base class of every exception heliconetrace raises."""


class ConfigurationError(HeliconeTraceError, ValueError):
    """A setting or environment variable has an invalid value."""


class MetadataError(HeliconeTraceError, ValueError):
    """A span option, property or bound metadata value is invalid."""
