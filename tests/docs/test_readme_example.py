"""The README's code is the examples' code: each host's snippet in the README is the
marked region of its script in examples/, which the test suite runs (tests/examples)."""
import re
from pathlib import Path

from helpers import snippets

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_shows_each_example_snippet_as_it_is_in_the_script():
    blocks = [b.strip() for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)]
    for name, code in snippets().items():
        assert code.strip() in blocks, f"README.md has no python block equal to examples' snippet {name!r}"


def test_readme_is_a_landing_page_whose_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for link in re.findall(r"\]\(([^)#]+)", text):
        if not link.startswith("http"):
            assert (README.parent / link).exists(), link
