"""Smoke test of the installed `grimos-proto` Python package (run from a fresh venv).

Both services' messages, grpcio stubs and type stubs import; stubs build on a channel, with a
method for every rpc the descriptors name; and messages encode to the same canonical JSON the
Rust services speak. No network calls (test_live.py makes them).
"""

import grpc
from google.protobuf import field_mask_pb2, json_format, timestamp_pb2

from grimos.auth.v1 import auth_pb2, auth_pb2_grpc
from grimos.user.v1 import user_pb2, user_pb2_grpc


def test_stubs_expose_every_rpc() -> None:
    channel = grpc.insecure_channel("127.0.0.1:50051")
    stubs = {
        "AuthService": auth_pb2_grpc.AuthServiceStub(channel),
        "UserService": user_pb2_grpc.UserServiceStub(channel),
    }
    for file in (auth_pb2.DESCRIPTOR, user_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            assert service.methods, f"{service.full_name} has no rpcs"
            for method in service.methods:
                assert callable(getattr(stubs[service.name], method.name)), method.full_name
    channel.close()


def test_service_descriptors_name_the_contract_packages() -> None:
    assert auth_pb2.DESCRIPTOR.package == "grimos.auth.v1"
    assert user_pb2.DESCRIPTOR.package == "grimos.user.v1"
    assert "AuthService" in auth_pb2.DESCRIPTOR.services_by_name
    assert "UserService" in user_pb2.DESCRIPTOR.services_by_name


def test_messages_round_trip_on_the_wire() -> None:
    request = auth_pb2.LoginRequest(email="ada@example.com", password="correct horse")
    decoded = auth_pb2.LoginRequest.FromString(request.SerializeToString())
    assert decoded.email == "ada@example.com"


def test_json_is_canonical() -> None:
    update = user_pb2.UpdateUserRequest(
        user=user_pb2.User(
            id="u1",
            display_name="Ada",
            create_time=timestamp_pb2.Timestamp(seconds=1),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    )
    assert json_format.MessageToDict(update) == {
        "user": {"id": "u1", "displayName": "Ada", "createTime": "1970-01-01T00:00:01Z"},
        "updateMask": "displayName",
    }
