"""Regenerate the Python code of the project's .proto files (``python proto/generate.py``).

Uses grpcio-tools' bundled protoc, so the output depends only on the pinned version;
``tests/test_proto_generated.py`` checks that regenerating changes nothing.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = ["execution_details.proto"]


def generate(out_dir: Path) -> None:
    """Write ``*_pb2.py`` and ``*_pb2.pyi`` for every proto into ``out_dir``."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    for name in PROTOS:
        args = [
            "protoc",
            f"-I{HERE}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(HERE / name),
        ]
        if protoc.main(args) != 0:  # type: ignore[no-untyped-call]
            raise SystemExit(f"protoc failed on {name}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
