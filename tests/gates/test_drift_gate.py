"""The drift gate (`just check-generated`) fails whenever gen/ is not what proto/ generates.

Each test runs the real recipe in a scratch git clone of the working tree.
"""

import pathlib

from conftest import ROOT, just_env, run

JUST = str(ROOT / ".venv" / "bin" / "just")


def check_generated(repo: pathlib.Path) -> tuple[int, str]:
    result = run([JUST, "check-generated"], repo, env=just_env())
    return result.returncode, result.stdout + result.stderr


def test_fresh_tree_passes_and_stale_trees_fail(repo_copy: pathlib.Path) -> None:
    code, output = check_generated(repo_copy)
    assert code == 0, output

    # A proto change without `just generate`.
    proto = repo_copy / "proto/grimos/user/v1/user.proto"
    proto.write_text(
        proto.read_text().replace(
            "  string display_name = 3 [(google.api.field_behavior) = REQUIRED];\n",
            "  string display_name = 3 [(google.api.field_behavior) = REQUIRED];\n  // Where the user lives.\n  string city = 7;\n",
            1,
        )
    )
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "proto only"], repo_copy)
    code, output = check_generated(repo_copy)
    assert code != 0
    assert "gen/rust/src/gen/grimos.user.v1.rs" in output
    assert "gen/python/src/grimos/user/v1/user_pb2.py" in output
    assert "gen/ts/src/gen/grimos/user/v1/user_pb.ts" in output
    assert "gen/openapi/grimos.openapi.json" in output


def test_hand_edit_of_generated_code_fails(repo_copy: pathlib.Path) -> None:
    generated = repo_copy / "gen/rust/src/gen/grimos.auth.v1.rs"
    generated.write_text(generated.read_text() + "\n// a hand edit\n")
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "hand edit"], repo_copy)
    code, output = check_generated(repo_copy)
    assert code != 0
    assert "gen/rust/src/gen/grimos.auth.v1.rs" in output


def test_hand_edit_of_a_vendored_copy_fails(repo_copy: pathlib.Path) -> None:
    # The googleapis protos must stay byte-identical to the pinned wheel's.
    vendored = repo_copy / "third_party/googleapis/google/api/http.proto"
    vendored.write_text(vendored.read_text().replace("HttpRule", "HttpRules", 1))
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "hand edit"], repo_copy)
    code, output = check_generated(repo_copy)
    assert code != 0
    assert "third_party/googleapis/google/api/http.proto" in output
