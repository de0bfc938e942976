"""Reshaping cubes: ``flatten_dimensions``, ``unflatten_dimension``, ``aggregate_spatial_window``."""
