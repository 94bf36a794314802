"""Reassembly of streamed LLM responses into the bodies Helicone logs.

`StreamRecorder` records what a streaming handler yields: raw SSE bytes or text, plain text
fragments, chunk dicts, or openai/anthropic SDK chunk objects. Its `finish` method returns a
`StreamResult` holding the stream as SSE text and the non-stream body it adds up to, for OpenAI
chat completions, legacy completions, the Responses API and Anthropic Messages.
"""

from ._recorder import StreamRecorder, StreamResult

__all__ = ["StreamRecorder", "StreamResult"]
