"""schemathesis hooks for `just test-schema` (loaded through SCHEMATHESIS_HOOKS by fuzz.py).

Every operation that takes a bearer token gets the access token fuzz.py logged in with
(SCHEMA_FUZZ_TOKEN), except `POST /v1/auth/logout`: it revokes the session of the bearer token
when its body names no token, which would end the session every other operation uses, so it
is fuzzed without one (its bearer token is optional) and revokes only tokens it makes up.

Nothing here logs in during the run: the fuzzer learns the account's email from the responses
and tries it with made-up passwords, which locks the account out of logging in (the login
throttle, as intended), and it may delete the account it is signed in as. Operations called
after that get 401, which the document allows.
"""

import os
from typing import Any

import schemathesis


@schemathesis.auth(refresh_interval=None).skip_for(method="POST", path="/v1/auth/logout")
class Session:
    """The session fuzz.py opened, for every operation but logout."""

    def get(self, case: Any, ctx: Any) -> str:
        return os.environ["SCHEMA_FUZZ_TOKEN"]

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
