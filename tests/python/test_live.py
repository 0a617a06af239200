"""Every HTTP operation the live system describes, over HTTP/JSON and as its gRPC method.

Runs against the system at USER_SERVICE_URL (`just test-clients` starts a private one with
tools/with-system.sh). The operations come from the served /openapi.json and the rpcs from
the generated package's descriptors, so a new rpc is tested here without an edit: each
operation, called without credentials and with an empty request, must reach its rpc over
both encodings (no 404, 405 or 501, no UNIMPLEMENTED) and fail the same way, with the
contract's HTTP status for the gRPC code and the JSON error body. The service-only rpcs
(no HTTP route, not at user-service's edge) are called on auth-service (AUTH_SERVICE_URL)
with the service credential (GRIMOS_SERVICE_TOKEN).
"""

import json
import os
import re
import urllib.error
import urllib.request
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from grimos.auth.v1 import auth_pb2
from grimos.user.v1 import user_pb2

TIMEOUT_SECONDS = 10.0

# The contract's mapping of gRPC codes to HTTP statuses.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def base_url() -> str:
    url = os.environ.get("USER_SERVICE_URL")
    assert url, "USER_SERVICE_URL is unset: run under tools/with-system.sh (just test-clients)"
    return url.rstrip("/")


def rpcs() -> dict[str, MethodDescriptor]:
    """Every rpc of the generated package, by `Service_Method` (the documents' operation ids)."""
    found = {}
    for file in (auth_pb2.DESCRIPTOR, user_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            for method in service.methods:
                found[f"{service.name}_{method.name}"] = method
    return found


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation of the served document."""
    with urllib.request.urlopen(f"{base_url()}/openapi.json", timeout=TIMEOUT_SECONDS) as r:
        document = json.load(r)
    return [
        (verb.upper(), path, operation)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    ]


def call_http(verb: str, path: str, operation: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The operation with every path parameter `x`, no credentials and `{}` as its body."""
    url = base_url() + re.sub(r"\{[^}]+\}", "x", path)
    body = b"{}" if "requestBody" in operation else None
    request = urllib.request.Request(url, data=body, method=verb)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def call_grpc(channel: grpc.Channel, method: MethodDescriptor) -> grpc.StatusCode:
    """The rpc with an empty request and no credentials: the code it answers."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    try:
        call(request_class(), timeout=TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call), error
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_every_http_operation_reaches_its_rpc_and_agrees_with_grpc() -> None:
    known = rpcs()
    target = base_url().split("://", 1)[1]
    ops = operations()
    assert ops, "the served document has no operations"
    with grpc.insecure_channel(target) as channel:
        for verb, path, operation in ops:
            name = operation["operationId"]
            method = known.get(name)
            assert method is not None, f"{verb} {path}: {name} is no rpc of the package"
            code = call_grpc(channel, method)
            assert code not in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED), (
                f"{name} over gRPC without credentials: {code}"
            )
            status, body = call_http(verb, path, operation)
            assert status == HTTP_STATUS[code], (
                f"{verb} {path}: HTTP {status} {body}, gRPC {code} ({HTTP_STATUS[code]})"
            )
            assert body["code"] == code.value[0], f"{verb} {path}: {body}"
            assert isinstance(body["message"], str) and isinstance(body["details"], list)


def post_json(path: str, body: dict[str, Any], token: str = "") -> tuple[int, dict[str, Any]]:
    """POST `body` to `path` over HTTP/JSON: the status and the JSON answer."""
    request = urllib.request.Request(
        base_url() + path, data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_user_changes_their_password_over_grpc_and_over_http() -> None:
    from grimos.auth.v1 import auth_pb2_grpc
    from grimos.user.v1 import user_pb2_grpc

    email = f"change-{os.getpid()}@example.com"
    first, second, third = "first password", "second password", "third password"
    target = base_url().split("://", 1)[1]
    with grpc.insecure_channel(target) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        users.CreateUser(
            user_pb2.CreateUserRequest(email=email, password=first, display_name="Changer"),
            timeout=TIMEOUT_SECONDS,
        )
        login = auth.Login(auth_pb2.LoginRequest(email=email, password=first), timeout=TIMEOUT_SECONDS)

        # Over gRPC with the generated client: the bearer names the caller.
        changed = auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=first, new_password=second),
            metadata=(("authorization", f"Bearer {login.access_token}"),),
            timeout=TIMEOUT_SECONDS,
        )
        assert changed.user_id == login.user_id and changed.access_token
        # The new session works; the old one and the old password do not.
        me = users.GetCurrentUser(
            user_pb2.GetCurrentUserRequest(),
            metadata=(("authorization", f"Bearer {changed.access_token}"),),
            timeout=TIMEOUT_SECONDS,
        )
        assert me.user.email == email
        try:
            users.GetCurrentUser(
                user_pb2.GetCurrentUserRequest(),
                metadata=(("authorization", f"Bearer {login.access_token}"),),
                timeout=TIMEOUT_SECONDS,
            )
            raise AssertionError("the old session still works")
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAUTHENTICATED
        try:
            auth.Login(auth_pb2.LoginRequest(email=email, password=first), timeout=TIMEOUT_SECONDS)
            raise AssertionError("the old password still logs in")
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAUTHENTICATED

    # Over HTTP/JSON: POST /v1/auth/password with the new session's bearer token.
    status, body = post_json(
        "/v1/auth/password",
        {"currentPassword": second, "newPassword": third},
        changed.access_token,
    )
    assert status == 200, body
    assert body["userId"] == login.user_id and body["accessToken"]
    status, body = post_json("/v1/auth/login", {"email": email, "password": third})
    assert status == 200, body
    # A wrong current password is the login's 401, with the JSON error body.
    status, body = post_json(
        "/v1/auth/password", {"currentPassword": "not it at all", "newPassword": first}, body["accessToken"]
    )
    assert status == 401 and body["code"] == 16, body


def service_only_rpcs() -> set[str]:
    """The AuthService rpcs with no HTTP route: the ones only services call."""
    with urllib.request.urlopen(f"{base_url()}/openapi.json", timeout=TIMEOUT_SECONDS) as r:
        document = json.load(r)
    routed = {
        operation["operationId"] for item in document["paths"].values() for operation in item.values()
    }
    return {name for name in rpcs() if name.startswith("AuthService_") and name not in routed}


def test_services_get_the_verification_keys_and_the_revocation_stream_from_auth_service() -> None:
    from grimos.auth.v1 import auth_pb2_grpc

    # The new service-only rpcs are here, not in the HTTP document nor at user-service's edge.
    assert {"AuthService_GetVerificationKeys", "AuthService_WatchRevocations"} <= service_only_rpcs()
    token = os.environ.get("GRIMOS_SERVICE_TOKEN")
    assert token, "GRIMOS_SERVICE_TOKEN is unset: run under tools/with-system.sh (just test-clients)"
    credential = (("authorization", f"Bearer {token}"),)
    auth_url = os.environ.get("AUTH_SERVICE_URL", "")
    assert auth_url, "AUTH_SERVICE_URL is unset: run under tools/with-system.sh (just test-clients)"
    with grpc.insecure_channel(auth_url.split("://", 1)[1]) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        keys = auth.GetVerificationKeys(
            auth_pb2.GetVerificationKeysRequest(), metadata=credential, timeout=TIMEOUT_SECONDS
        )
        assert keys.issuer and keys.audience and keys.leeway.seconds == 5
        assert keys.keys and all(
            (k.kty, k.crv, k.alg, k.use) == ("OKP", "Ed25519", "EdDSA", "sig") and k.kid and k.x
            for k in keys.keys
        )
        assert "users.read.self" in {p for row in keys.roles if row.role == "user" for p in row.permissions}
        try:
            auth.GetVerificationKeys(auth_pb2.GetVerificationKeysRequest(), timeout=TIMEOUT_SECONDS)
            raise AssertionError("the keys were given without the service credential")
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAUTHENTICATED

        stream = auth.WatchRevocations(
            auth_pb2.WatchRevocationsRequest(), metadata=credential, timeout=TIMEOUT_SECONDS
        )
        first = next(stream)
        assert first.reset and first.cursor and first.heartbeat_interval.ToMilliseconds() > 0
        heartbeat = next(stream)
        assert not heartbeat.revocations and heartbeat.cursor == first.cursor
        stream.cancel()
