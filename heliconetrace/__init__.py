"""heliconetrace: log every LLM request a service handles to Helicone, in the background.

Decorate a handler with `@helicone_logged`, or wrap a block in `helicone_span()`, and each call
becomes one Helicone log record, delivered by background threads while the handler goes on.
"""

from heliconetrace._api import configure, flush, shutdown, stats
from heliconetrace._context import Binding, bind, current_span
from heliconetrace._decorator import helicone_logged
from heliconetrace._errors import ConfigurationError, HeliconeTraceError, MetadataError
from heliconetrace._scope import SpanScope, helicone_span
from heliconetrace._span import Span
from heliconetrace._stats import ExporterStats
from heliconetrace._threads import ContextThreadPoolExecutor, with_context

__version__ = "0.1.0"

__all__ = [
    "Binding",
    "ConfigurationError",
    "ContextThreadPoolExecutor",
    "ExporterStats",
    "HeliconeTraceError",
    "MetadataError",
    "Span",
    "SpanScope",
    "__version__",
    "bind",
    "configure",
    "current_span",
    "flush",
    "helicone_logged",
    "helicone_span",
    "shutdown",
    "stats",
    "with_context",
]
