"""dav2: depth maps from photos, folders and videos with Depth-Anything V2.

`load_model` and `predict` are imported on first use, so that `dav2 --help` and `import dav2_cli` stay fast and
never load torch.
"""

__version__ = "0.1.0"
__all__ = ["load_model", "predict", "__version__"]


def __getattr__(name):
    if name in ("load_model", "predict"):
        from dav2_cli.runtime import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'dav2_cli' has no attribute {name!r}")
