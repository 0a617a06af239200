"""The OpenAPI document (gen/openapi/grimos.openapi.json, written by `just generate`) is valid
OpenAPI 3.1 and describes the contract's HTTP/JSON routes.

The route table below is the public contract's (shared/CONTRACT.md, "HTTP/JSON"), restated as
the oracle: the document is generated from the proto's `google.api.http` options and the
rule table in rust/codegen/src/http_rules.rs, and must agree with it. The contract leaves
extra rpcs to the implementers, so the document may have operations beyond the table; each
must still answer errors with the JSON error body.
"""

import json
from typing import Any

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from conftest import ROOT

DOCUMENT = ROOT / "gen" / "openapi" / "grimos.openapi.json"

# (method, path, success status, bearer: "yes", "no" or "optional")
CONTRACT = [
    ("post", "/v1/users", "201", "no"),
    ("get", "/v1/users/me", "200", "yes"),
    ("get", "/v1/users/{user_id}", "200", "yes"),
    ("patch", "/v1/users/{user_id}", "200", "yes"),
    ("delete", "/v1/users/{user_id}", "204", "yes"),
    ("get", "/v1/users", "200", "yes"),
    ("post", "/v1/auth/login", "200", "no"),
    ("post", "/v1/auth/refresh", "200", "no"),
    ("post", "/v1/auth/logout", "204", "optional"),
]


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


def schema(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return found


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_every_contract_route_as_the_contract_says() -> None:
    doc = document()
    operations = {(method, path) for path, item in doc["paths"].items() for method in item}
    missing = {(method, path) for method, path, _, _ in CONTRACT} - operations
    assert not missing, missing
    for method, path, success, bearer in CONTRACT:
        operation = doc["paths"][path][method]
        statuses = set(operation["responses"])
        assert success in statuses, (method, path)
        assert not any(s.startswith("2") and s != success for s in statuses), (method, path)
        if success == "204":
            assert "content" not in operation["responses"][success]
        else:
            assert "application/json" in operation["responses"][success]["content"]
        security = operation["security"]
        expected = {"yes": [{"bearer": []}], "no": [], "optional": [{"bearer": []}, {}]}[bearer]
        assert security == expected, (method, path)
        if bearer != "no":
            assert "401" in statuses, (method, path)


def test_every_operation_answers_errors_with_the_json_error_body() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert sum(s.startswith("2") for s in statuses) == 1, (method, path)
            if operation["security"]:
                assert "401" in statuses, (method, path)
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    continue
                ref = response["$ref"].removeprefix("#/components/responses/")
                content = doc["components"]["responses"][ref]["content"]["application/json"]
                assert content["schema"]["$ref"] == "#/components/schemas/google.rpc.Status"


def test_parameters_and_bodies_follow_the_contract() -> None:
    doc = document()
    list_users = doc["paths"]["/v1/users"]["get"]
    assert {p["name"]: p["in"] for p in list_users["parameters"]} == {"pageSize": "query", "pageToken": "query"}
    page_size = next(p for p in list_users["parameters"] if p["name"] == "pageSize")
    assert page_size["schema"]["type"] == "integer"
    patch = doc["paths"]["/v1/users/{user_id}"]["patch"]
    assert {p["name"]: p["in"] for p in patch["parameters"]} == {"user_id": "path", "updateMask": "query"}
    # The PATCH body is the (partial) User itself; the mask is a string.
    assert patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("grimos.user.v1.User")
    mask = next(p for p in patch["parameters"] if p["name"] == "updateMask")
    assert mask["schema"]["type"] == "string"
    # An empty logout body is allowed (the bearer token is revoked instead); sign-up needs one.
    assert doc["paths"]["/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    assert doc["paths"]["/v1/users"]["post"]["requestBody"]["required"] is True


def test_schemas_use_the_proto3_json_mapping() -> None:
    doc = document()
    user = schema(doc, "grimos.user.v1.User")
    properties = user["properties"]
    assert set(properties) == {"id", "email", "displayName", "roles", "createTime", "updateTime"}
    assert properties["createTime"] == properties["createTime"] | {"type": "string", "format": "date-time"}
    for output_only in ["id", "email", "roles", "createTime", "updateTime"]:
        assert properties[output_only].get("readOnly") is True, output_only
    assert "readOnly" not in properties["displayName"]
    assert user["additionalProperties"] is False
    assert properties["displayName"]["description"].startswith("The name shown for the user")
    sign_up = schema(doc, "grimos.user.v1.CreateUserRequest")
    assert sorted(sign_up["required"]) == ["displayName", "email", "password"]
    error = schema(doc, "google.rpc.Status")
    assert error["required"] == ["code", "message", "details"]
    assert schema(doc, error["properties"]["details"]["items"]["$ref"])["required"] == ["@type"]
