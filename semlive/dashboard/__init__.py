"""The live terminal dashboard of ``semlive run`` (rich), read-only over the run's status."""

from semlive.dashboard._dashboard import Dashboard, render

__all__ = ["Dashboard", "render"]
