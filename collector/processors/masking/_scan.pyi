"""Types of the compiled masking module (``_scan.c``, ``_gate.c``)."""

from collections.abc import Callable

Window = tuple[int, int]

def scan(
    text: str, literals: tuple[str, ...], /
) -> None | tuple[int, list[Window], list[Window], list[Window], list[Window]]: ...

class Gate:
    def __init__(self, literals: tuple[str, ...], key_check: Callable[[str], bool], values: bool) -> None: ...
    def plan(self, wire: bytes, /) -> None | bool | list[bool | list[int]]: ...
    def forget(self) -> None: ...
