"""Reading a mapping of `config.yaml`'s `mpilot:` section: a typo fails at start and names the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def checked_section(section: Any, known: Iterable[str], where: str,
                    error: type[ValueError] = ValueError) -> dict[str, Any]:
    """`section` as a dict ({} when absent), refused (`error`) when it is no mapping or has a field not in
    `known`."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise error(f"{where} must be a mapping")
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise error(f"{where} has unknown fields {unknown}; known: {sorted(known)}")
    return section
