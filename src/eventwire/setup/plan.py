"""Setup layer: ``ServicePlan``, what `init` will generate, checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eventwire.setup.choices import BrokerChoice, Pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePlan:
    """Everything needed to render a service; built and validated before anything is written."""

    name: str
    package: str
    target: Path
    broker: BrokerChoice
    pattern: Pattern
    message_format: str
    monitoring: bool
    advice_text: str = ""
    switching: bool = False  # the broker or the pattern changes on this update
