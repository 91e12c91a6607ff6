"""The method map: every method recipe (egs/<corpus>/<method>/run.sh) has a README.md whose
relative links and listed repository paths exist, and the top README links every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("distilwhisper", "s2lora", "pepsi", "st_kd", "distill_w2v2")
EXPECTED_RECIPES = {
    "egs/mini/distilwhisper",
    "egs/mini/s2lora",
    "egs/mini/pepsi",
    "egs/mini/st_kd",
    "egs/mini/distill_w2v2",
    "egs/commonvoice/distilwhisper",
    "egs/commonvoice/pepsi",
    "egs/csrc/s2lora",
    "egs/mustc/st_kd",
    "egs/librispeech/distill_w2v2",
    "egs/gigaspeech/distill_w2v2",
}
RECIPES = sorted(p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("egs/*/*/run.sh"))

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# code spans naming a file or directory of the repository (paths relative to its root)
REPO_PREFIXES = ("speechkd/", "conf/", "local/", "tests/", "egs/")
NOT_A_PATH = set(" *?{}<>$|=")


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links that point into the repository (anchors dropped)."""
    targets = []
    for target in LINK.findall(text):
        if URL.match(target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def listed_paths(text: str) -> list[str]:
    """Repository paths written as code spans outside code blocks (no patterns, no outputs)."""
    prose = FENCE.sub("", text)
    return [
        span.rstrip("/")
        for span in CODE_SPAN.findall(prose)
        if span.startswith(REPO_PREFIXES) and not NOT_A_PATH & set(span)
    ]


def test_the_method_recipes_are_the_expected_ones() -> None:
    assert set(RECIPES) == EXPECTED_RECIPES


@pytest.mark.parametrize("recipe", sorted(EXPECTED_RECIPES))
def test_every_method_recipe_has_a_readme(recipe: str) -> None:
    assert (ROOT / recipe / "README.md").is_file(), f"{recipe} has no README.md"


@pytest.mark.parametrize("recipe", sorted(EXPECTED_RECIPES))
def test_readme_links_and_listed_paths_exist(recipe: str) -> None:
    readme = ROOT / recipe / "README.md"
    text = readme.read_text(encoding="utf-8")
    links = relative_links(text)
    assert links, f"{readme}: no relative links"
    missing = [t for t in links if not (readme.parent / t).exists()]
    missing += [p for p in listed_paths(text) if not (ROOT / p).exists()]
    assert not missing, f"{readme}: missing {missing}"
    # links stay inside the repository
    for target in links:
        resolved = (readme.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{readme}: {target} leaves the repository"


@pytest.mark.parametrize("recipe", sorted(EXPECTED_RECIPES))
def test_readme_links_its_run_sh_shared_stages_and_file_list(recipe: str) -> None:
    readme = ROOT / recipe / "README.md"
    method = Path(recipe).name
    assert method in METHODS
    resolved = {(readme.parent / t).resolve() for t in relative_links(readme.read_text("utf-8"))}
    assert (readme.parent / "run.sh").resolve() in resolved
    assert (ROOT / "local" / "recipes" / f"{method}.sh").resolve() in resolved
    if not recipe.startswith("egs/mini/"):  # the method's file list lives in the mini README
        assert (ROOT / "egs" / "mini" / method / "README.md").resolve() in resolved


def test_top_readme_links_every_method_readme() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert "\n## Methods\n" in text
    section = text.split("\n## Methods\n", 1)[1].split("\n## ", 1)[0]
    links = relative_links(section)
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, f"README.md Methods: missing {missing}"
    resolved = {(ROOT / t).resolve() for t in links}
    unlinked = [r for r in sorted(EXPECTED_RECIPES) if (ROOT / r / "README.md") not in resolved]
    assert not unlinked, f"README.md Methods does not link {unlinked}"


def test_the_parsers() -> None:
    text = (
        "See [a](run.sh), [b](../x.md#part), [c](https://example.org), [d](#top).\n"
        "`speechkd/bin/rtf.py`, `conf/pepsi/`, `exp/out.md`, `conf/<m>/x.yaml`\n"
        "```bash\n`tests/in_a_block.py`\n```\n"
    )
    assert relative_links(text) == ["run.sh", "../x.md"]
    assert listed_paths(text) == ["speechkd/bin/rtf.py", "conf/pepsi"]
