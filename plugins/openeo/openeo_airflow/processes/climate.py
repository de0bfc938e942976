"""Climatology processes: ``climatological_normal`` and ``anomaly`` (filled in by the processes work)."""
