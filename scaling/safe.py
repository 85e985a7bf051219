"""Guards for values and paths read from files someone else may have written.

A results folder sent to you is such a source: a value becomes a path only as one checked name, writes never go through a symbolic link, and strings
reach the terminal escaped. Imports nothing of scaling but its errors (any layer may use it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from scaling.errors import ConfigError, StorageError

__all__ = ["is_safe_name", "name_for", "no_symlink", "printable", "safe_name"]


def printable(text: object) -> str:
    """`text` with every control character (C0, DEL, C1: ESC sequences, OSC title changes, newlines, bells)
    escaped, so a terminal prints it instead of obeying it and a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def is_safe_name(name: object) -> bool:
    """One path component that stays inside its parent: non-empty, only letters, digits, '-', '_', '.', not
    starting with '.' (never "." or "..", never hidden)."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".") and len(name) <= 200
            and all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in name))


def safe_name(value: object, what: str, file: str | Path) -> str:
    """`value` if it is one safe path component (`is_safe_name`), else a one-line ConfigError naming the file,
    the key and the value."""
    if not is_safe_name(value):
        raise ConfigError(f"{printable(file)}: {what} = {printable(repr(value))}: not one safe folder name "
                          "(letters, digits, '-', '_', '.', not starting with '.')")
    return str(value)


def name_for(value: object) -> str:
    """A safe path component for any value read from a file: the value itself when safe, else a digest of it
    (so a crafted value can neither leave the folder nor abort the command)."""
    return str(value) if is_safe_name(value) else "h" + hashlib.sha256(str(value).encode()).hexdigest()[:16]


def no_symlink(path: str | Path) -> Path:
    """`path`, after refusing in one line (StorageError) when it is a symbolic link: writing through it would
    put the file wherever the link points."""
    path = Path(path)
    if os.path.islink(path):
        raise StorageError(f"{printable(path)}: is a symbolic link (to {printable(os.readlink(path))}); "
                           "refusing to write through it")
    return path
