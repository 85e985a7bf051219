"""Regenerate the README's config reference from the dataclass docstrings: python scripts/update_readme.py"""

import re
from pathlib import Path

from scaling.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- config-reference:start -->.*<!-- config-reference:end -->", re.S)


def render(text: str) -> str:
    block = f"<!-- config-reference:start -->\n{config_reference()}\n<!-- config-reference:end -->"
    return BLOCK.sub(lambda _: block, text)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
