"""The repository's documentation resolves: every cited document is in the repository.

* Every path to a Markdown file cited in code, config, workflow, tests, benchmarks, the
  README or docs/ (``docs/science.md``, ``../config/README.md#key``) names a file of the
  repository, and its ``#anchor``, where given, names a heading of that file.
* Every relative link of a Markdown file (``[text](target)``) resolves, anchors included.
* No text cites the founders' documents that the repository does not contain.
* The claim numbers and parts the report shows each have their place in docs/claims.md,
  and docs/data.md's size table says what the code declares.
* The README and docs/ name only files (``benchmarks/bench_gc.py``) and code
  (``gcstudy.metrics.gc.subsample``) that exist: a module that moves takes its docs along.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "benchmarks", "workflow", "config", "docs", "profiles", "scripts")
TOP_FILES = ("README.md", "Snakefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".toml", ".sh", ".txt", ".json"}
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

# A path to a Markdown file with at least one folder ("docs/claims.md", "../config/README.md"),
# optionally with an anchor. It cites the repository when it starts in one of the scanned
# folders or with "./" or "../"; other paths ("out/gpu_check.md") and bare names
# ("claims.md") are files the code writes, not references.
MD_PATH = re.compile(r"(?<![\w.$/{-])((?:\.\.?/)*[\w.-]+(?:/[\w.-]+)*/[\w.-]*\w\.md)(#[\w-]+)?")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# The founders' documents, spelled so that this file does not contain them itself.
FOREIGN = re.compile(
    "|".join(
        [
            r"SCIENCE\.md",
            r"FACTS\.md",
            "ARCHITECTURE" + r"\.md",
            "SLURM-" + "NOTES",
            r"(?i:architecture\s+" + "guide)",
        ]
    )
)


def text_files() -> list[Path]:
    """Every text file of the scanned folders and the top-level files (installed metadata
    and this file, whose planted references are broken on purpose, excluded)."""
    files = [REPO / name for name in TOP_FILES if (REPO / name).exists()]
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if parts & SKIPPED_PARTS or any(p.endswith(".egg-info") for p in parts):
                continue
            if path == Path(__file__).resolve():
                continue
            if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name == "Snakefile"):
                files.append(path)
    return files


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code fences), GitHub's way:
    a repeated heading gets ``-1``, ``-2``, ..."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def resolve(target: str, cited_in: Path) -> Path | None:
    """The repository file a cited path names: relative to the citing file's folder (a
    Markdown link) or to the repository root (a path in code), or None."""
    for base in (cited_in.parent, REPO):
        path = (base / target).resolve()
        if path.exists() and path.is_relative_to(REPO):
            return path
    return None


def problem(target: str, anchor: str, cited_in: Path) -> str | None:
    """Why ``target#anchor`` cited in ``cited_in`` does not resolve, or None."""
    path = resolve(target, cited_in) if target else cited_in
    if path is None:
        return f"{target}: no such file in the repository"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"{target}#{anchor}: no such heading in {path.relative_to(REPO)}"
    return None


def broken_references(path: Path) -> list[str]:
    """The unresolved Markdown paths and relative links in one file, each with its line."""
    broken = []
    markdown = path.suffix == ".md"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cited = [
            (m.group(1), (m.group(2) or "#")[1:])
            for m in MD_PATH.finditer(line)
            if m.group(1).startswith(("./", "../")) or m.group(1).split("/")[0] in SCANNED
        ]
        if markdown:
            for target in MD_LINK.findall(line):
                if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                cited.append((file, anchor))
        for target, anchor in cited:
            why = problem(target, anchor, path)
            if why:
                broken.append(f"{path.relative_to(REPO)}:{number}: {why}")
    return broken


def test_every_cited_document_and_heading_is_in_the_repository():
    broken = [entry for path in text_files() for entry in broken_references(path)]
    assert not broken, "references that do not resolve:\n" + "\n".join(broken)


def test_no_text_cites_the_founders_documents():
    cited = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FOREIGN.search(line)
    ]
    assert not cited, "documents the repository does not contain:\n" + "\n".join(cited)


def test_the_checker_finds_a_planted_broken_reference(tmp_path, monkeypatch):
    """The checks above can fail: a missing file, a missing heading, a broken relative link
    and a citation of a foreign document are each found; good references pass."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "science.md").write_text("# Science\n\n## Few-shot transfer\n")
    code = tmp_path / "code.py"
    code.write_text(
        '"""See docs/science.md#few-shot-transfer and docs/science.md."""\n'
        "# docs/science.md#no-such-heading\n"
        "# docs/missing.md\n"
        '(out / "claims.md"), "out/gpu_check.md"  # files it writes, not references\n'
    )
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](science.md#science) [bad](sciense.md) [self](#nothing)\n# Page\n")
    assert broken_references(code) == [
        "code.py:2: docs/science.md#no-such-heading: no such heading in docs/science.md",
        "code.py:3: docs/missing.md: no such file in the repository",
    ]
    assert broken_references(page) == [
        "docs/page.md:1: sciense.md: no such file in the repository",
        "docs/page.md:1: #nothing: no such heading in docs/page.md",
    ]
    assert FOREIGN.search("see " + "FACTS" + ".md") and FOREIGN.search("the Architecture  guide")
    assert not FOREIGN.search("see docs/facts.md and docs/science.md")


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Claim 4: the two bounds", "claim-4-the-two-bounds"),
        ("Equal progress, by design: the clocks", "equal-progress-by-design-the-clocks"),
        ("`resources`", "resources"),
        ("Resource estimate (`config/paper.yaml`)", "resource-estimate-configpaperyaml"),
    ],
)
def test_heading_anchors_follow_github(heading, anchor):
    assert slug(heading) == anchor


def test_every_claim_and_part_of_the_report_has_its_place_in_claims_md():
    from gcstudy.analysis.claims import CLAIMS, PARTS

    text = (REPO / "docs" / "claims.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    for claim in CLAIMS:
        assert any(re.match(rf"#+ Claims? (\d+(, | and ))*{claim}\b", h) for h in headings), (
            f"docs/claims.md has no section for claim {claim}"
        )
    missing = [part for part in PARTS if not re.search(rf"\b{part[0]}{part[1]}\b", text)]
    assert not missing, f"docs/claims.md does not mention the parts {missing}"


def declared_sizes() -> dict[str, tuple[int, int, int]]:
    """(train, test, target) images per data set, as the code declares them."""
    try:  # issue 21: the data-set declarations own their sizes
        from gcstudy.study.datasets import BUILT_IN, DATASETS

        sizes = {n: DATASETS[n] for n in BUILT_IN}  # not the sets a test has declared
        return {n: (d.train_size, d.test_size, d.target_size) for n, d in sizes.items()}
    except ImportError:
        from gcstudy.study.config import SIZES

        return SIZES


def test_data_md_states_the_declared_sizes():
    rows = {}
    for line in (REPO / "docs" / "data.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = tuple(int(cell) for cell in cells[3:6])
    assert rows == declared_sizes()


def test_the_readme_links_every_document_of_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Documentation\n", 1)[-1].split("\n## ", 1)[0]
    linked = set(MD_LINK.findall(section))
    missing = [
        f"docs/{p.name}"
        for p in sorted((REPO / "docs").glob("*.md"))
        if f"docs/{p.name}" not in linked
    ]
    assert "\n## Documentation\n" in readme and not missing, f"README does not link {missing}"


PROSE = ("README.md", "config/README.md", *(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))
# A file of the repository by its path: a known top folder, a name with a suffix (folders
# such as ``--out benchmarks/gpu_check`` are outputs); ``*`` globs (``tests/test_slurm_*.py``).
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:src|tests|benchmarks|scripts|profiles|config|workflow)/[\w./*-]*\.[a-z]+)\b"
)
DOTTED = re.compile(r"(?<![\w.])(gcstudy(?:\.\w+)+)")


def code_name_exists(dotted: str) -> bool:
    """Whether ``gcstudy.a.b.c`` is a module or an attribute of one (longest module first)."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            thing = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(thing, name):
                return False
            thing = getattr(thing, name)
        return True
    return False


@pytest.mark.parametrize("document", PROSE)
def test_the_prose_names_only_files_and_code_that_exist(document):
    """Paths (``benchmarks/bench_gc.py``) and dotted names (``gcstudy.metrics.gc.subsample``)
    in the README and docs/ name files and code of the repository: a module that moves
    or a function that goes must take its documentation along."""
    text = (REPO / document).read_text(encoding="utf-8")
    missing = [p for p in set(REPO_PATH.findall(text)) if not any(REPO.glob(p))]
    missing += [name for name in set(DOTTED.findall(text)) if not code_name_exists(name)]
    assert not missing, f"{document} names what the repository does not hold: {sorted(missing)}"
