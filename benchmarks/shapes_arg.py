"""The benchmarks' `--shapes LxD,...` option (n_layer x d_model), parsed in one place; imports no torch, so a
benchmark whose parent process stays torch-free (bench_malloc.py) can use it too."""

from __future__ import annotations

import argparse


def shape_list(text: str) -> list[tuple[int, int]]:
    """"1x32,2x64" -> [(1, 32), (2, 64)]; an argparse `type=`, so a bad item is one clear error."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"{item!r}: want n_layer x d_model as LxD, e.g. 1x32,2x64")
        shapes.append((int(parts[0]), int(parts[1])))
    return shapes


def add_shapes_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--shapes", type=shape_list, default=shape_list(default),
                        help=f"LxD,... (n_layer x d_model; default {default})")
