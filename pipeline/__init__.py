"""vdiff's engine: video I/O, style engines, the render loop and the CLI. Never imports Qt."""

__version__ = "0.1.0"
