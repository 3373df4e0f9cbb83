"""`syncwire generate PROTO_DIR OUT_DIR`: typed Python stubs for your own .proto files.

Runs grpcio-tools' protoc with the mypy-protobuf plugins over every ``.proto`` under
PROTO_DIR, exactly as syncwire generates its own code (scripts/generate.sh): messages
(``*_pb2.py``), gRPC stubs (``*_pb2_grpc.py``) and their typed ``.pyi`` stubs, with the
async stub types that make ``XStub(WebSocketChannel(url))`` type-check. Needs the
``codegen`` extra (``pip install 'syncwire[codegen]'``: grpcio-tools and mypy-protobuf
at the versions syncwire itself is generated with).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

import click

from .errors import CliError, ExitCode

PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")


def _plugin(name: str) -> str:
    """The path of a protoc plugin installed beside this interpreter (or on PATH)."""
    beside = Path(sysconfig.get_path("scripts")) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise CliError(
            f"{name} not found: pip install 'syncwire[codegen]' (mypy-protobuf)", ExitCode.FAILURE
        )
    return found


def generate_stubs(proto_dir: Path, out_dir: Path) -> list[Path]:
    """Generates code for every .proto under ``proto_dir`` (imports resolve from there
    and from protobuf's well-known types) into ``out_dir``; every generated directory
    becomes a package. Returns the .proto files; raises CliError on failure."""
    if importlib.util.find_spec("grpc_tools") is None:
        raise CliError(
            "grpcio-tools is not installed: pip install 'syncwire[codegen]'", ExitCode.FAILURE
        )
    from grpc_tools import protoc  # the codegen extra; imported only when generating

    protos = sorted(proto_dir.rglob("*.proto"))
    if not protos:
        raise CliError(f"no .proto files under {proto_dir}", ExitCode.USAGE)
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_dir}",
        f"--proto_path={well_known}",
        *(f"--plugin={name}={_plugin(name)}" for name in PLUGINS),
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",  # quiet: no "Writing mypy to ..." line per file
        f"--mypy_grpc_out=quiet:{out_dir}",
        *(str(proto) for proto in protos),
    ]
    if protoc.main(args) != 0:
        raise CliError("protoc failed (its errors are above)", ExitCode.FAILURE)
    for proto in protos:
        package = out_dir / proto.parent.relative_to(proto_dir)
        while package != out_dir and package.is_relative_to(out_dir):
            (package / "__init__.py").touch()
            package = package.parent
    return protos


@click.command()
@click.argument("proto_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def generate(proto_dir: Path, out_dir: Path) -> None:
    """Generate typed Python code for the .proto files under PROTO_DIR into OUT_DIR.

    \b
    For each foo.proto: foo_pb2.py, foo_pb2_grpc.py and their .pyi type stubs, so
      FooStub(WebSocketChannel("ws://host:port"))   # client, over WebSocket
      FooStub(grpc.aio.insecure_channel("host:port"))  # client, over gRPC
      add_FooServicer_to_server(servicer, server)   # server, either listener
    type-check under mypy --strict. Put OUT_DIR on the import path.
    Needs: pip install 'syncwire[codegen]'.
    """
    protos = generate_stubs(proto_dir, out_dir)
    click.echo(f"generated {len(protos)} proto file(s) into {out_dir}", file=sys.stdout)
