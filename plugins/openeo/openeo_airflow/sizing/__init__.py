"""Sizing: from a plan to engine, tiling and resources (pure)."""
