"""Vector cube processes: ``vector_buffer``, ``vector_reproject``, ``vector_to_*_points``, ``filter_vector``."""
