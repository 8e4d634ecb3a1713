"""The worker's routes, one module per endpoint family."""
