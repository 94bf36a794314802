"""Present a stream of plain text fragments as an OpenAI chat-completions stream.

Helicone's stream parsers read SSE `data:` lines of JSON, so each fragment becomes one
`chat.completion.chunk`, and the body becomes a `chat.completion` whose message content is the
joined text. The fragments carry no id, model, usage or finish reason, so the body has none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._chunk import Reassembly


def reassemble_text(fragments: Sequence[tuple[str, int]]) -> tuple[str, Reassembly]:
    """Return the SSE body and the reassembly for `(text, item_index)` fragments.

    Empty fragments are skipped. The first chunk also carries `role: assistant`, as OpenAI's
    first chunk does.
    """
    lines: list[str] = []
    texts: list[str] = []
    first_content_index: int | None = None
    for text, item_index in fragments:
        if not text:
            continue
        delta: dict[str, Any] = {"content": text}
        if first_content_index is None:
            first_content_index = item_index
            delta = {"role": "assistant", "content": text}
        chunk = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        lines.append("data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False))
        texts.append(text)

    body = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(texts)},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    text_body = "".join(line + "\n\n" for line in lines)
    return text_body, Reassembly(json=body, first_content_index=first_content_index)
