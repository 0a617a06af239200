"""The breaking-change gate (`just breaking`) rejects changes that break v1 clients.

Each test edits a scratch copy of the workspace and runs the same command as the Justfile
recipe: `buf breaking proto --against gen/baseline/grimos-v1.binpb`.
"""

import pathlib

from conftest import BASELINE, BUF, run

AUTH = pathlib.Path("proto/grimos/auth/v1/auth.proto")
USER = pathlib.Path("proto/grimos/user/v1/user.proto")


def edit(module: pathlib.Path, file: pathlib.Path, old: str, new: str) -> None:
    path = module / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


def breaking(module: pathlib.Path) -> tuple[int, str]:
    result = run([str(BUF), "breaking", "proto", "--against", str(BASELINE)], module)
    return result.returncode, result.stdout + result.stderr


def test_current_api_is_compatible_with_the_released_baseline(module_copy: pathlib.Path) -> None:
    code, output = breaking(module_copy)
    assert code == 0, output


def test_renumbered_field_is_rejected(module_copy: pathlib.Path) -> None:
    edit(module_copy, AUTH, "string password = 2 [(google.api.field_behavior) = REQUIRED];", "string password = 7 [(google.api.field_behavior) = REQUIRED];")
    code, output = breaking(module_copy)
    assert code != 0
    assert 'Previously present field "2" with name "password"' in output


def test_removed_rpc_is_rejected(module_copy: pathlib.Path) -> None:
    edit(
        module_copy,
        USER,
        "  // ListUsers returns users ordered by creation time, then id. Admins only.\n"
        "  rpc ListUsers(ListUsersRequest) returns (ListUsersResponse) {\n"
        '    option (google.api.http) = {get: "/v1/users"};\n'
        "  }\n",
        "",
    )
    code, output = breaking(module_copy)
    assert code != 0
    assert 'Previously present RPC "ListUsers"' in output


def test_renamed_field_is_rejected_because_json_clients_would_break(module_copy: pathlib.Path) -> None:
    edit(module_copy, USER, "string display_name = 3 [", "string name = 3 [")
    code, output = breaking(module_copy)
    assert code != 0
    assert "display_name" in output


def test_new_optional_field_is_accepted(module_copy: pathlib.Path) -> None:
    edit(
        module_copy,
        AUTH,
        "  string password = 2 [(google.api.field_behavior) = REQUIRED];\n}",
        "  string password = 2 [(google.api.field_behavior) = REQUIRED];\n"
        "  // A one-time code, for accounts with a second factor.\n"
        "  optional string otp_code = 3;\n}",
    )
    code, output = breaking(module_copy)
    assert code == 0, output


def test_lint_requires_a_comment_on_every_field(module_copy: pathlib.Path) -> None:
    edit(
        module_copy,
        AUTH,
        "  string password = 2 [(google.api.field_behavior) = REQUIRED];\n}",
        "  string password = 2 [(google.api.field_behavior) = REQUIRED];\n  string otp_code = 3;\n}",
    )
    result = run([str(BUF), "lint", str(module_copy)], module_copy)
    assert result.returncode != 0
    assert "otp_code" in result.stdout + result.stderr
