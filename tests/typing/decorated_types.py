"""Checked by mypy in tests/test_typing.py: decorated callables keep their exact types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from typing_extensions import assert_type

from heliconetrace import helicone_logged


@helicone_logged
def sync_handler(body: dict[str, str], *, user: str = "anon") -> int:
    return 1


@helicone_logged(model="gpt-4o", properties={"Team": "a"})
async def async_handler(body: dict[str, str]) -> str:
    return "x"


@helicone_logged
def generator_handler(count: int) -> Iterator[str]:
    yield "x"


@helicone_logged(user="u")
async def async_generator_handler(count: int) -> AsyncIterator[bytes]:
    yield b"x"


class Service:
    @helicone_logged
    def method(self, body: dict[str, str]) -> float:
        return 1.0

    @helicone_logged
    @classmethod
    def build(cls, name: str) -> Service:
        return cls()

    @staticmethod
    @helicone_logged
    def helper(value: int) -> int:
        return value


assert_type(sync_handler({"model": "m"}, user="u"), int)
assert_type(async_handler({"model": "m"}), Coroutine[Any, Any, str]).close()
assert_type(generator_handler(1), Iterator[str])
assert_type(async_generator_handler(1), AsyncIterator[bytes])
assert_type(Service().method({}), float)
assert_type(Service.build("x"), Service)
assert_type(Service.helper(2), int)
