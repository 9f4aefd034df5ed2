"""The CLI's access to services: built once per invocation from settings."""

from __future__ import annotations

from functools import cache

from corral.app import Services, build_services
from corral.settings import Settings


@cache
def services() -> Services:
    return build_services(Settings())
