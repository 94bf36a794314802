"""The public surface: exported names, and the README's commands staying in step with CI."""

from __future__ import annotations

from pathlib import Path

import heliconetrace

ROOT = Path(__file__).resolve().parent.parent


def test_all_lists_public_names() -> None:
    """__all__ is exactly the documented public API, and every name in it exists."""
    assert sorted(heliconetrace.__all__) == sorted(
        [
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
    )
    for name in heliconetrace.__all__:
        assert hasattr(heliconetrace, name), name


def test_package_is_typed() -> None:
    """The package ships py.typed, so type checkers read its hints."""
    assert (ROOT / "heliconetrace" / "py.typed").exists()


def test_ci_runs_readme_test_command() -> None:
    """.ci/run contains the README's test command word for word."""
    readme = (ROOT / "README.md").read_text()
    command = "pip install -e '.[test]' && python -m pytest"
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()
