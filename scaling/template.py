"""The syntax of a [train].command template: a shell-like command line whose {fields} name spec fields.

Below the config (whose validation refuses a template that cannot be a command line) and torch-free; filling
a template from a run's spec is scaling.external's (`fields`, `argv_for`), which reads the run folder.
"""

from __future__ import annotations

import shlex
import string


def template_problem(template: str) -> str | None:
    """Why a [train].command template cannot be a command line (shlex, str.format syntax), or None."""
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        return f"not a command line: {exc}"
    if not argv:
        return "is empty"
    for arg in argv:
        try:
            for _, name, _, _ in string.Formatter().parse(arg):
                if name == "" or (name is not None and name.isdigit()):
                    return f"{arg!r}: positional {{}} fields are not allowed; name a spec field, e.g. {{n_layer}}"
        except ValueError as exc:
            return f"{arg!r}: {exc} (write {{{{ and }}}} for literal braces)"
    return None
