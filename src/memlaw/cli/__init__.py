"""The ``memlaw`` command line."""
