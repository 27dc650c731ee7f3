"""The repository stands alone: nothing in it points at documents outside it (a design brief, reference notes, a
path on someone's machine), relative links resolve inside it, and the CLIs' --help texts stand alone."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(
    r"\.\./shared|/work/|/home/\w|/Users/\w|/root/|DESIGN(\.md|\s*§|\s+\d)|aws-facts|local-aws|anchors\.md|"
    r"policies-gates-ops|style-examples|§\s*\d")
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".txt", ".cfg", ".ini", ""}
PENDING: set[tuple[str, str]] = set()  # (file, heading) of sections not yet rewritten: none


def _files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [ROOT / n for n in names if (ROOT / n).suffix in TEXT and (ROOT / n).is_file()
            and n != "tests/unit/test_self_contained.py" and n != "LICENSE"]


def _sections(path: Path, text: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of a markdown file; the whole file for anything else."""
    if path.suffix != ".md":
        return [("", text)]
    parts = re.split(r"(?m)^(## .*)$", text)
    return [("", parts[0])] + list(zip(parts[1::2], parts[2::2], strict=True))


def test_no_file_refers_to_documents_outside_the_repository():
    found = []
    for path in _files():
        rel = str(path.relative_to(ROOT))
        for heading, body in _sections(path, path.read_text(errors="replace")):
            if (rel, heading.strip()) in PENDING:
                continue
            for match in OUTSIDE.finditer(body):
                line = body[:match.start()].count("\n") + 1
                found.append(f"{rel} ({heading.strip() or 'top'}, line {line} of the section): {match.group(0)!r}")
    assert not found, "\n".join(found)


def test_relative_links_in_the_docs_resolve_inside_the_repository():
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if ROOT not in resolved.parents and resolved != ROOT or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def _all_help(parser: argparse.ArgumentParser) -> list[str]:
    texts = [parser.format_help()]
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public walk of sub-parsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                texts += _all_help(sub)
    return texts


@pytest.mark.parametrize("module", ["imagestreams.cli", "imagestreams_local.__main__"])
def test_help_texts_mention_no_outside_document(module):
    parser = __import__(module, fromlist=["build_parser"]).build_parser()
    texts = _all_help(parser)
    assert len(texts) > 5
    for text in texts:
        assert not OUTSIDE.search(text), text


def test_tool_versions_the_makefile_installs_are_the_ones_pyproject_pins():
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for tool, variable in (("aws-sam-cli", "SAM_CLI_VERSION"), ("checkov", "CHECKOV_VERSION")):
        version = re.search(rf"^{variable} := (\S+)$", makefile, re.M).group(1)
        assert f'"{tool}=={version}"' in pyproject, tool
        assert f"{tool}==$({variable})" in makefile, tool
    assert re.search(r'"cfn-lint==[\d.]+"', pyproject) and re.search(r'"aws-sam-translator==[\d.]+"', pyproject)
    assert 'license = "Apache-2.0"' in pyproject and "Apache License" in (ROOT / "LICENSE").read_text()
