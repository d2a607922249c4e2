"""Shapes of Azure identifiers, checked in one place."""

from __future__ import annotations

import re

# Subscription, tenant and Entra object ids are GUIDs: 8-4-4-4-12 hex digits.
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(text: object) -> bool:
    """True when ``text`` is a GUID string (any letter case)."""
    return isinstance(text, str) and GUID.match(text) is not None
