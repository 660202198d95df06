"""Types of the compiled masking module (``_scan.c``, ``_gate.c``)."""

from collections.abc import Callable

Window = tuple[int, int]

def scan(
    text: str, literals: tuple[str, ...], /
) -> tuple[int, list[Window], list[Window], list[Window], list[Window]] | None: ...

class Gate:
    def __init__(self, literals: tuple[str, ...], key_check: Callable[[str], bool], values: bool) -> None: ...
    def plan(self, wire: bytes, /) -> bool | list[bool | list[int]] | None: ...
    def forget(self) -> None: ...
