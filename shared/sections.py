"""Every feature section of the settings and the dataclass that reads it, so a settings document can
be checked whole (publish.py does, before deploying it) rather than failing in the first runbook
that happens to read a mistyped section at night."""

from __future__ import annotations

import importlib
from typing import Dict, Tuple

from shared.errors import SettingsError
from shared.settings import Settings, settings_from_dict

SECTION_CLASSES: Dict[str, Tuple[str, str]] = {
    "stop": ("shared.stop.run", "StopSection"),
    "exemption": ("shared.exemption.policy", "ExemptionSection"),
    "create": ("shared.create.policy", "CreateSection"),
    "start": ("shared.start.policy", "StartSection"),
    "warning": ("shared.warning.policy", "WarningSection"),
    "pricing": ("shared.pricing.cost", "PricingSection"),
}


def check_settings_document(doc: dict) -> Settings:
    """Validate the core sections and every feature section; raises SettingsError naming the setting."""
    settings = settings_from_dict(doc)
    for name, (module, cls) in SECTION_CLASSES.items():
        settings.section(name, getattr(importlib.import_module(module), cls))
    settings.require_scope()
    return settings


__all__ = ["SECTION_CLASSES", "SettingsError", "check_settings_document"]
