"""The README is part of the product: its commands are CI's, its reference matches the code."""

import importlib.util
import re
from pathlib import Path

from scaling.cli import VERBS, build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_first_screen_has_the_two_commands_and_ci_runs_the_second() -> None:
    first_screen = README.split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", first_screen, re.S)
    commands = [l for l in blocks[0].splitlines() if l and not l.startswith("#")]
    assert commands[0] == "pip install -e . torch==2.13.0 && scaling run sweeps/tiny.toml"
    test_command = commands[1]
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_config_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("update_readme", REPO / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(README) == README, "run: python scripts/update_readme.py"


def test_cli_verbs_are_frozen_and_documented() -> None:
    # Removing or renaming a verb breaks users' scripts: change this set deliberately.
    assert VERBS == ("plan", "run", "status", "fit", "plot", "report", "compare", "suggest", "curves", "train")
    parser_verbs = set(build_parser()._subparsers._group_actions[0].choices)
    assert parser_verbs == set(VERBS)
    for verb in VERBS:
        assert f"`scaling {verb} " in README


def test_readme_images_exist() -> None:
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (REPO / image).is_file(), image
