# Default stack: nothing beyond the base layer.
