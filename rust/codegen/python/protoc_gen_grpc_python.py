"""buf plugin that writes grpcio service stubs (`*_pb2_grpc.py`) with grpcio-tools' protoc.

buf knows only protoc's own built-in generators, and `grpc_python` is not one of them, so
this wrapper takes buf's CodeGeneratorRequest, hands its files to the pinned grpcio-tools
through a temporary descriptor set, and returns what it wrote. It also emits a `py.typed`
marker for each top-level package, because `clean: true` deletes hand-made ones.
"""

import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        fds = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        (root / "fds.binpb").write_bytes(fds.SerializeToString())
        out = root / "out"
        out.mkdir()
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--descriptor_set_in={root / 'fds.binpb'}",
                f"--grpc_python_out={out}",
                *request.file_to_generate,
            ]
        )
        if status != 0:
            response.error = f"grpc_tools.protoc exited with {status}"
        else:
            for path in sorted(out.rglob("*.py")):
                generated = response.file.add()
                generated.name = path.relative_to(out).as_posix()
                generated.content = path.read_text()
            for top in sorted({name.split("/")[0] for name in request.file_to_generate}):
                marker = response.file.add()
                marker.name = f"{top}/py.typed"
                marker.content = ""
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
