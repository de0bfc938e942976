"""How a process runs over space: the declaration each registered process makes.

The engine cuts a cube into spatial tiles and runs the graph per tile. That is correct only if
it knows, for every node, what a tile's result depends on:

- ``LOCAL``: a pixel's result depends on that pixel only (elementwise math, reducers over time
  or bands, ``filter_temporal``...). Tiles run independently.
- ``Halo(n)``: a pixel's result depends on pixels up to ``n`` away (``apply_kernel`` with a 5x5
  kernel: 2). Each tile is read with ``n`` extra pixels on every side and cut back afterwards.
  ``align`` > 1 asks for tile sizes that are multiples of it (``apply_neighborhood`` chunks).
- ``Global``: the result depends on the whole extent (``aggregate_spatial``, reducing ``x``/``y``,
  resampling to a new grid). The engine computes a partial result per tile, combines the
  partials and finishes the process once (``reduction``); the default reduction gathers the
  tiles' inputs and runs the process on the mosaic, which is always correct.

A declaration is either a ``Space`` or a function of the node's literal arguments returning
one (the kernel size of ``apply_kernel``, the dimension of ``reduce_dimension``...). Arguments
that are not literals (they come from another node) are passed as ``NOT_LITERAL``; a rule must
then answer conservatively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SPATIAL_DIMS = ("x", "y")


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL: Any = _NotLiteral()


@dataclass(frozen=True)
class Reduction:
    """Per-tile partials of a global process: ``partial(arguments)`` on each tile (the core of
    the tile, no halo), ``combine(partials)`` and ``finish(combined, arguments)``. Partials
    must be plain data (arrays, lists): the engine may compute them in other processes."""

    partial: Callable[[dict[str, Any]], Any]
    combine: Callable[[list[Any]], Any]
    finish: Callable[[Any, dict[str, Any]], Any]


@dataclass(frozen=True)
class Space:
    """``kind`` is ``local``, ``halo`` or ``global``; see the module docstring."""

    kind: str
    halo: int = 0
    align: int = 1
    reduction: Reduction | None = None

    @property
    def is_global(self) -> bool:
        return self.kind == "global"

    def describe(self) -> str:
        if self.kind == "halo":
            return f"halo of {self.halo} px" + (
                f", tiles aligned to {self.align}" if self.align > 1 else ""
            )
        if self.kind == "global":
            return "global, " + ("per-tile partials" if self.reduction else "gathers its input")
        return "local"


LOCAL = Space("local")


def Halo(pixels: int, align: int = 1) -> Space:
    return Space("halo", halo=max(int(pixels), 0), align=max(int(align), 1)) if pixels else LOCAL


def Global(reduction: Reduction | None = None) -> Space:
    return Space("global", reduction=reduction)


SpaceRule = Space | Callable[[Mapping[str, Any]], Space]


def resolve_space(rule: SpaceRule, arguments: Mapping[str, Any]) -> Space:
    """The space declaration of one node, given its literal arguments."""
    return rule if isinstance(rule, Space) else rule(arguments)


def along_dimension(parameter: str = "dimension") -> SpaceRule:
    """Local unless the process works along a spatial dimension (then it needs everything)."""

    def rule(arguments: Mapping[str, Any]) -> Space:
        dimension = arguments.get(parameter, NOT_LITERAL)
        if dimension is NOT_LITERAL or dimension in SPATIAL_DIMS:
            return Global()
        return LOCAL

    return rule
