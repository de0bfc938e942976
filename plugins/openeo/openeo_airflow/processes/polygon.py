"""``apply_polygon``: run a process over the pixels of each polygon."""
