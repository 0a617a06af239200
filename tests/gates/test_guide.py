"""docs/guide.md stays true to the code it describes.

- Every fenced block preceded by `<!-- excerpt: PATH -->` appears verbatim in PATH (each line
  compared with surrounding whitespace stripped, the lines contiguous and in order), and every
  block in a programming language carries such a marker: the guide shows real code only.
- Every relative link points to a file of this repository, and every `#anchor` to a heading.
- Every `just` / `cargo xtask` recipe it names exists in the Justfile, every `-p PACKAGE` is a
  workspace package, every script or file a command names exists, and every setting
  (`AUTH_*`, `USER_*`, `GRIMOS_*`, ...) it names is read somewhere in the code.

Standard library and pytest only.
"""

import dataclasses
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT

GUIDE = ROOT / "docs" / "guide.md"
JUSTFILE = ROOT / "Justfile"
JUST = ROOT / ".venv" / "bin" / "just"

EXCERPT = re.compile(r"^<!--\s*excerpt:\s*(\S+)\s*-->\s*$")
# A fence may be indented (a block inside a list item); its body loses that indentation.
FENCE = re.compile(r"^( *)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
# Blocks in these "languages" are commands or sample output, not code taken from a file.
NOT_CODE = {"sh", "text"}


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    lines: list[str]
    excerpt: str | None  # the path of the `<!-- excerpt: ... -->` marker, if any


def parse(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown text, and its prose lines (outside any block).

    Fails on an unclosed fence and on an excerpt marker that no fence follows at once."""
    blocks: list[Block] = []
    prose: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = EXCERPT.match(line)
        if marker:
            fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            assert fence, f"guide line {i + 1}: an excerpt marker must be followed at once by a fenced block"
        opening = FENCE.match(line)
        if opening is None:
            if not marker:
                prose.append(line)
            i += 1
            continue
        indent, fence, lang = opening.groups()
        excerpt = None
        if i > 0:
            previous = EXCERPT.match(lines[i - 1])
            excerpt = previous.group(1) if previous else None
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].lstrip(" ").startswith(fence[0] * len(fence)):
            line_j = lines[j]
            body.append(line_j[len(indent) :] if line_j.startswith(indent) else line_j.lstrip(" "))
            j += 1
        assert j < len(lines), f"guide line {i + 1}: the fenced block is never closed"
        blocks.append(Block(i + 1, lang, body, excerpt))
        i = j + 1
    return blocks, prose


BLOCKS, PROSE = parse(GUIDE.read_text(encoding="utf-8"))
EXCERPTS = [b for b in BLOCKS if b.excerpt is not None]
PROSE_TEXT = "\n".join(PROSE)
# Inline code spans of the prose: commands and names quoted in sentences and tables.
INLINE_CODE = re.findall(r"`([^`\n]+)`", PROSE_TEXT)
# Everything the guide presents as something to type.
COMMAND_TEXT = [line for b in BLOCKS if b.lang == "sh" for line in b.lines] + INLINE_CODE


def normalized(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines]


def contains_run(haystack: list[str], needle: list[str]) -> bool:
    """Whether `needle` occurs in `haystack` as consecutive elements."""
    if not needle:
        return False
    first = needle[0]
    for start, line in enumerate(haystack):
        if line == first and haystack[start : start + len(needle)] == needle:
            return True
    return False


def test_the_guide_shows_excerpts() -> None:
    # Guards the parser: a guide whose markers stopped matching would pass every other test.
    assert len(EXCERPTS) >= 10, f"only {len(EXCERPTS)} excerpt blocks found in {GUIDE}"


@pytest.mark.parametrize("block", EXCERPTS, ids=[f"line{b.line}:{b.excerpt}" for b in EXCERPTS])
def test_excerpt_is_verbatim(block: Block) -> None:
    assert block.excerpt is not None
    source = (ROOT / block.excerpt).resolve()
    assert source.is_relative_to(ROOT), f"guide line {block.line}: {block.excerpt} is outside the repository"
    assert source.is_file(), f"guide line {block.line}: excerpt source {block.excerpt} does not exist"
    wanted = normalized(block.lines)
    assert any(wanted), f"guide line {block.line}: the excerpt is empty"
    have = normalized(source.read_text(encoding="utf-8").splitlines())
    if contains_run(have, wanted):
        return
    # Name the first line that is not in the file, to make the fix obvious.
    missing = next((line for line in wanted if line not in have), None)
    detail = (
        f"this line is not in the file: {missing!r}"
        if missing is not None
        else "every line exists, but not consecutively in this order"
    )
    pytest.fail(
        f"guide line {block.line}: the excerpt is not a verbatim part of {block.excerpt}; {detail}. "
        "Copy the current code into docs/guide.md."
    )


def test_code_blocks_are_excerpts_of_real_files() -> None:
    unmarked = [
        f"line {b.line} ({b.lang or 'no language'})"
        for b in BLOCKS
        if b.lang not in NOT_CODE and b.excerpt is None
    ]
    assert not unmarked, (
        "code blocks without an `<!-- excerpt: PATH -->` marker (use ```sh for commands and "
        f"```text for output): {', '.join(unmarked)}"
    )


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: pathlib.Path) -> set[str]:
    _, prose = parse(markdown.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = github_slug(heading.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links() -> list[str]:
    without_code = re.sub(r"`[^`\n]+`", "", PROSE_TEXT)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_guide_links_to_files() -> None:
    assert len(relative_links()) >= 10, "expected the guide to link to the files it describes"


def test_relative_links_resolve() -> None:
    broken = []
    for target in relative_links():
        path, _, fragment = target.partition("#")
        file = (GUIDE.parent / path).resolve() if path else GUIDE
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, "broken links in docs/guide.md:\n" + "\n".join(broken)


def justfile_recipes() -> set[str]:
    """Public recipe names from the Justfile: `name ...:` at the start of a line (parameters may
    have `="default"`s; not `name :=`), except private ones (`_name`), which `just` hides."""
    names = set()
    for line in JUSTFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^@?([A-Za-z_][\w-]*)(?:\s+[^:]*)?:(?!=)", line)
        if match and not match.group(1).startswith("_"):
            names.add(match.group(1))
    return names


def test_justfile_parsing_agrees_with_just() -> None:
    if not JUST.exists():
        pytest.skip("no .venv/bin/just (run `cargo xtask setup`)")
    listed = subprocess.run(
        [str(JUST), "--summary"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert justfile_recipes() == set(listed)


def mentioned_recipes() -> set[str]:
    names = set()
    for text in COMMAND_TEXT:
        for match in re.finditer(r"(?:^|[\s;&|(])(?:\S*/)?(?:just|cargo xtask)((?:[ \t]+[a-z][a-z0-9-]*)+)", text):
            names.update(match.group(1).split())
    return names


def test_every_just_recipe_named_exists() -> None:
    mentioned = mentioned_recipes()
    assert {"dev", "examples", "test-examples", "generate", "check-generated", "breaking"} <= mentioned, (
        f"the recipe scan found only {sorted(mentioned)}"
    )
    missing = mentioned - justfile_recipes()
    assert not missing, f"docs/guide.md names recipes the Justfile lacks: {sorted(missing)}"


def workspace_packages() -> set[str]:
    members = [ROOT / "gen" / "rust", ROOT / "examples" / "rust", *sorted((ROOT / "rust").iterdir())]
    names = set()
    for member in members:
        manifest = member / "Cargo.toml"
        if manifest.is_file():
            name = re.search(r'(?m)^name\s*=\s*"([^"]+)"', manifest.read_text(encoding="utf-8"))
            if name:
                names.add(name.group(1))
    return names


def test_every_cargo_package_named_exists() -> None:
    mentioned = {
        package
        for text in COMMAND_TEXT
        for command in re.findall(r"\bcargo\s+(?:run|test|build|check|clippy)\b[^;&|#]*", text)
        for package in re.findall(r"(?:\s)(?:-p|--package)\s+([\w-]+)", command)
    }
    assert "user-service" in mentioned
    missing = mentioned - workspace_packages()
    assert not missing, f"docs/guide.md runs packages that are not in the workspace: {sorted(missing)}"


def test_every_file_a_command_names_exists() -> None:
    paths = {
        p.rstrip(".,;:")
        for text in COMMAND_TEXT
        for p in re.findall(r"(?<![\w/.-])((?:tools|examples|gen|proto|rust|tests|docs)/[\w./-]+)", text)
    }
    assert "tools/with-system.sh" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists() and not p.endswith("/"))
    assert not missing, f"docs/guide.md names files that do not exist: {missing}"


def source_text() -> str:
    """The code and scripts that read settings (everything but docs and generated code)."""
    parts = [JUSTFILE.read_text(encoding="utf-8")]
    for folder in ("rust", "tools", "examples"):
        for path in sorted((ROOT / folder).rglob("*")):
            if any(skip in path.parts for skip in ("node_modules", "dist", "target")):
                continue
            if path.is_file() and path.suffix in {".rs", ".sh", ".py", ".ts", ".mjs", ""}:
                try:
                    parts.append(path.read_text(encoding="utf-8"))
                except UnicodeDecodeError:
                    continue
    return "\n".join(parts)


def test_every_setting_named_exists() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    settings = set(re.findall(r"\b(?:AUTH|USER|GRIMOS|WEB|DEV)_[A-Z0-9_]*[A-Z0-9]\b", guide))
    assert "AUTH_SERVICE_ADDRESS" in settings
    code = source_text()
    missing = sorted(s for s in settings if s not in code)
    assert not missing, f"docs/guide.md names settings no code reads: {missing}"
