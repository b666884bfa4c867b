"""Where a run's servers live: one `Platform` per kind (local.py, gke/), chosen once from the spec (base.py)."""

from servesweep.platform.base import Platform, platform_for, platform_from, platform_from_yaml, platform_of

__all__ = ["Platform", "platform_for", "platform_from", "platform_from_yaml", "platform_of"]
