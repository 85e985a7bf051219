"""Plug-in models: `[model] arch = "package.module:factory"` trains the user's own nn.Module.

Contract (also in the README, "Sweep your own model"):
- `factory(shape)` takes a `scaling.accounting.ModelShape` (n_layer, d_model, n_head, seq_len, vocab_size,
  mlp_ratio; the planner resolves them like a built-in family's, by [model].aspect_ratio and head_dim or from
  [grid].shapes) and returns an `nn.Module` whose forward maps token ids (B, T) int64 to logits (B, T, vocab_size).
- The module is imported from the working directory the sweep is planned and launched from (it is put first
  on sys.path), or from an installed package.
- N is counted from the built module: total = every distinct parameter (a tied head is counted once);
  embedding = the parameters of its nn.Embedding modules; non-embedding = total - embedding.
- FLOPs per token: the module's own `flops_per_token()` method if it has one (training FLOPs, forward and
  backward, per token, a number >= 1); else an estimate after Kaplan et al. 2020 (Table 1), stated here:
  C = 6 * N_non_embedding + 6 * n_layer * seq_len * d_model + 6 * d_model * vocab_size. The second term is
  attention over the context (it over-counts a model without attention: give such a model its own
  flops_per_token()); the third is the output logits of a head tied to the embedding (left out when a
  non-embedding matrix has a vocab_size side, i.e. an untied head, which N_non_embedding already holds).
- Checked: a lazy parameter (nn.LazyLinear) or a flops_per_token() that is not finite and >= 1 is refused
  at plan time; when a run trains, the module built there must have the parameters counted here
  (check_trained) and its first forward must return (B, T, vocab_size) (scaling.model.check_logits).
- It trains with the project's trainer (seeded init: torch.manual_seed(seed) before the factory runs), data,
  checkpoints (its state_dict), requeue and fits, exactly as "gpt" does.

Counting builds the module on torch's meta device (shapes without memory) with torch.nn.init's initializers
skipped, so resolving a 1e9-parameter target costs milliseconds per size tried. This module imports torch only when a plug-in is counted or built; the planner
stays torch-free for the built-in families.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from scaling.errors import ConfigError


class PluginError(ConfigError):
    """A plug-in arch that does not import, or whose factory fails or builds something that is not a model.
    The message names the arch; the planner prefixes the sweep file."""


def is_plugin(arch: str) -> bool:
    """Whether an arch names a plug-in factory ("package.module:factory") rather than a built-in family."""
    return ":" in arch


def _on_path() -> None:
    # Scripts installed as console entry points (`scaling`) put their bin folder first on sys.path, not the
    # working directory: the contract says the working directory, so make it so (jobs inherit the launch's).
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


@functools.cache
def resolve(arch: str) -> Callable[..., Any]:
    """The factory named by "package.module:factory" (attribute paths like "m:Cls.build" allowed)."""
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr or ":" in attr:
        raise PluginError(f"[model].arch = {arch!r}: a plug-in is \"package.module:factory\"")
    _on_path()
    cwd = os.getcwd()
    try:
        obj: Any = importlib.import_module(module_name)
    except SystemExit as exc:  # sys.exit() at import would end `plan` silently with its code
        raise PluginError(f"[model].arch = {arch!r}: importing {module_name!r} called sys.exit({exc.code!r}); a "
                          "plug-in module must only define its factory when imported") from None
    except Exception as exc:  # ImportError, or anything the user's module raises while importing
        raise PluginError(f"[model].arch = {arch!r}: cannot import {module_name!r} from {cwd} or an "
                          f"installed package: {type(exc).__name__}: {_line(exc)}") from None
    finally:
        moved = os.getcwd() != cwd
        if moved:  # relative paths (the results folder) would now point elsewhere
            os.chdir(cwd)
    if moved:
        raise PluginError(f"[model].arch = {arch!r}: importing {module_name!r} changed the working directory; a "
                          "plug-in module must not (relative paths such as the results folder would move)")
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"[model].arch = {arch!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PluginError(f"[model].arch = {arch!r}: {attr!r} is a {type(obj).__name__}, not a callable factory")
    return obj


def build(shape: Any) -> Any:
    """The plug-in's nn.Module for `shape` (a ModelShape whose arch is the plug-in string), on the CPU."""
    import torch

    factory = resolve(shape.arch)
    try:
        module = factory(shape)
    except Exception as exc:
        raise PluginError(f"[model].arch = {shape.arch!r}: the factory failed for L{shape.n_layer} "
                          f"d{shape.d_model}: {type(exc).__name__}: {_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise PluginError(f"[model].arch = {shape.arch!r}: the factory returned a {type(module).__name__}, "
                          "not a torch.nn.Module")
    return module


@dataclass(frozen=True)
class Counts:
    n_params: int
    n_params_non_embedding: int
    flops_per_token: int
    flops_source: str
    """"plug-in" (its flops_per_token()) or "estimate" (6 N_non_embedding + 6 n_layer seq_len d_model)."""


@functools.cache
def counts(shape: Any) -> Counts:
    """N (total, non-embedding) and training FLOPs per token of the plug-in built at `shape` (see the module
    docstring for the rules). Cached per shape: the planner asks many times while it resolves sizes."""
    import torch

    with torch.device("meta"), _no_init():  # parameter shapes only: no memory, no init cost
        module = build(shape)
    total, non_embedding = count_module(module, shape)
    if total < 1:
        raise PluginError(f"[model].arch = {shape.arch!r}: builds a module without parameters at "
                          f"L{shape.n_layer} d{shape.d_model}")
    params = {id(p): p for p in module.parameters()}
    embedding = _embedding_ids(module)
    hook = getattr(module, "flops_per_token", None)
    if callable(hook):
        try:
            fpt = hook()
        except Exception as exc:
            raise PluginError(f"[model].arch = {shape.arch!r}: flops_per_token() failed: {type(exc).__name__}: "
                              f"{_line(exc)}") from None
        if isinstance(fpt, bool) or not isinstance(fpt, (int, float)) or not (1 <= fpt < math.inf):
            raise PluginError(f"[model].arch = {shape.arch!r}: flops_per_token() = {fpt!r}: must be a finite "
                              "number >= 1 (training FLOPs per token, forward + backward)")
        return Counts(total, non_embedding, int(round(fpt)), "plug-in")
    # Kaplan et al. 2020, Table 1: C_forward = 2 N + 2 n_layer n_ctx d_attn; training = 3x forward. A head tied
    # to the embedding is not in N_non_embedding, but its logits matmul is real work (Hoffmann et al. 2022,
    # App. F, count it): 2 d V forward, added unless a non-embedding matrix with a vocab_size side (an untied
    # head, already in N) exists.
    V, d = shape.vocab_size, shape.d_model
    untied_head = any(p.dim() == 2 and V in p.shape for i, p in params.items() if i not in embedding)
    estimate = 6 * non_embedding + 6 * shape.n_layer * shape.seq_len * d + (0 if untied_head else 6 * d * V)
    return Counts(total, non_embedding, max(1, estimate), "estimate")


def count_module(module: Any, shape: Any) -> tuple[int, int]:
    """(total, non-embedding) parameters of a built plug-in module by the stated rules: distinct tensors (a tied
    head counts once), embedding = its nn.Embedding modules' parameters. A lazy parameter (nn.LazyLinear and
    kin: no shape until the first forward) cannot be counted, so it is a PluginError naming it."""
    import torch

    lazy = [name for name, p in module.named_parameters() if torch.nn.parameter.is_lazy(p)]
    if lazy:
        raise PluginError(f"[model].arch = {shape.arch!r}: parameter {lazy[0]!r} is uninitialized (a lazy module "
                          "such as nn.LazyLinear); N must be known before training: give the layer its input size")
    params = {id(p): p for p in module.parameters()}  # distinct tensors: a tied head counts once
    total = sum(p.numel() for p in params.values())
    embedding = _embedding_ids(module)
    return total, total - sum(params[i].numel() for i in embedding if i in params)


def check_trained(module: Any, shape: Any, n_params: int, n_params_non_embedding: int | None) -> None:
    """PluginError unless the module about to train has the parameters the plan counted (on the meta device):
    a factory that builds something else there than on the training device would record a false N."""
    total, non_embedding = count_module(module, shape)
    if total != n_params or (n_params_non_embedding is not None and non_embedding != n_params_non_embedding):
        planned = f"{n_params:,}" + ("" if n_params_non_embedding is None else
                                     f" ({n_params_non_embedding:,} non-embedding)")
        raise PluginError(f"[model].arch = {shape.arch!r}: the module built for training has {total:,} parameters "
                          f"({non_embedding:,} non-embedding) but the plan counted {planned} on torch's meta "
                          "device; the factory must build the same module on every device")


def _embedding_ids(module: Any) -> set[int]:
    import torch

    return {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)}


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """torch.nn.init's in-place initializers as no-ops while counting: on meta tensors the first one imports
    torch's Python meta kernels (~800 modules, 4-20 s here), and counting needs shapes, not values
    (the transformers library counts its models with the same patch, `no_init_weights`)."""
    import torch.nn.init as init

    saved = {name: fn for name, fn in vars(init).items() if name.endswith("_") and not name.startswith("_")
             and callable(fn)}
    try:
        for name in saved:
            setattr(init, name, _keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def _keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    return tensor


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
