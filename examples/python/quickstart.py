"""Quickstart: sign up, log in and read your own profile with the grimos-proto package.

Everything goes through user-service: it serves grimos.user.v1.UserService and the
end-user rpcs of grimos.auth.v1.AuthService (Login, RefreshToken, RevokeToken,
ValidateToken, CheckPermission) on one port. Set USER_SERVICE_URL (default http://127.0.0.1:8080);
with an https:// URL the channel uses TLS, trusting GRIMOS_TLS_CA if it is set (else the
system's roots).

    pip install ./gen/python   # grimos-proto, with grpcio and protobuf
    python examples/python/quickstart.py
"""

import os
import uuid

import grpc

from grimos.auth.v1 import auth_pb2, auth_pb2_grpc
from grimos.user.v1 import user_pb2, user_pb2_grpc

# Every call gets a deadline: without one a call to a stuck server waits forever.
TIMEOUT_SECONDS = 5.0
PASSWORD = "correct horse battery"  # at least 8 characters


def open_channel(url: str) -> grpc.Channel:
    """A channel to http://host:port (plaintext) or https://host:port (TLS)."""
    scheme, sep, rest = url.partition("://")
    target = (rest if sep else url).rstrip("/")
    if not sep or scheme == "http":
        return grpc.insecure_channel(target)
    if scheme != "https":
        raise SystemExit(f"{url}: give an http:// or https:// URL")
    ca_file = os.environ.get("GRIMOS_TLS_CA")
    roots = None
    if ca_file:
        with open(ca_file, "rb") as f:
            roots = f.read()
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))


def expect(what: str, got: object, want: object) -> None:
    """Fail with a clear message (not `assert`, which `python -O` strips)."""
    if got != want:
        raise SystemExit(f"quickstart failed: {what} is {got!r}, expected {want!r}")


def main() -> None:
    url = os.environ.get("USER_SERVICE_URL", "http://127.0.0.1:8080")
    email = f"ada+{uuid.uuid4().hex}@example.com"  # unique, so the example can run again
    display_name = "Ada Lovelace"

    with open_channel(url) as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)

        # 1. Sign up. CreateUser is the only call that needs no token.
        created = users.CreateUser(
            user_pb2.CreateUserRequest(email=email, password=PASSWORD, display_name=display_name),
            timeout=TIMEOUT_SECONDS,
        ).user
        print(f"signed up     {created.email} as user {created.id}")

        # 2. A wrong password is UNAUTHENTICATED; any other error is a real failure.
        try:
            auth.Login(
                auth_pb2.LoginRequest(email=email, password="not the password"),
                timeout=TIMEOUT_SECONDS,
            )
            raise SystemExit("quickstart failed: a wrong password was accepted")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            print(f"wrong password rejected: {e.code().name}: {e.details()}")

        # 3. Log in for an access token (and a refresh token, unused here).
        login = auth.Login(
            auth_pb2.LoginRequest(email=email, password=PASSWORD), timeout=TIMEOUT_SECONDS
        )
        print(f"logged in     token expires {login.expire_time.ToJsonString()}")

        # 4. Authenticated calls carry the access token as `authorization` metadata.
        me = users.GetCurrentUser(
            user_pb2.GetCurrentUserRequest(),
            metadata=(("authorization", f"Bearer {login.access_token}"),),
            timeout=TIMEOUT_SECONDS,
        ).user
        print(f"current user  {me.display_name} <{me.email}> roles={list(me.roles)}")

    expect("the signed-up email", created.email, email)
    expect("the signed-up display name", created.display_name, display_name)
    expect("the logged-in user id", login.user_id, created.id)
    expect("the current user's id", me.id, created.id)
    expect("the current user's email", me.email, email)
    expect("the current user's display name", me.display_name, display_name)
    expect("the current user's roles", list(me.roles), ["user"])
    print("quickstart: ok")


if __name__ == "__main__":
    main()
