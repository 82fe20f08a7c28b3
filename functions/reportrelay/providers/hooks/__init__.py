"""What a vendor's protocol needs that data cannot say: small named hooks a provider spec refers to.

A spec's ``hooks`` maps a step of the provider (``HOOK_POINTS``) to a hook's name, ``<module>.<function>``
of a module in this package: ``{"check": "torus.own_queue_entry"}``. The declarative provider then runs
the hook for that step, handing it the provider (its calls, context and settings) and ``default``, the
step as the spec's data alone would run it, so a hook adds what is missing instead of redoing the rest.

Only functions registered with ``@hook(point)`` can be named, and only for their own point: a spec (a
user's too) chooses among shipped code, it never brings its own.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args

#: The provider steps a hook may take over (``reportrelay.providers.base.Provider``'s methods), and
#: ``retry_after``: how long a throttled (429) answer's body asks to wait, for every call, when it sends
#: no Retry-After (called as ``hook(provider, body)``, answering seconds or None).
HookPoint = Literal[
    "validate", "submit", "find_submitted", "check", "hold", "open_result", "cancel", "retry_after"
]
HOOK_POINTS: tuple[str, ...] = get_args(HookPoint)
HOOK_NAME = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"

_HOOK_ATTRIBUTE = "__reportrelay_hook_point__"
Hooked = TypeVar("Hooked", bound=Callable[..., Any])


def hook(point: HookPoint) -> Callable[[Hooked], Hooked]:
    """Register a function as the hook of one provider step; its name is ``<module>.<function>``."""
    if point not in HOOK_POINTS:
        raise ValueError(f"unknown hook point '{point}' (one of {', '.join(HOOK_POINTS)})")

    def register(function: Hooked) -> Hooked:
        setattr(function, _HOOK_ATTRIBUTE, point)
        return function

    return register


def resolve(name: str, point: str) -> Callable[..., Any]:
    """The registered hook called ``name`` for ``point``; ValueError saying what is wrong otherwise."""
    if not re.fullmatch(HOOK_NAME, name):
        raise ValueError(f"'{name}' is not a hook name (<module>.<function>, lower case)")
    module_name, _, function_name = name.partition(".")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError:
        raise ValueError(f"there is no hook module '{module_name}' (reportrelay.providers.hooks)") from None
    function = getattr(module, function_name, None)
    registered = getattr(function, _HOOK_ATTRIBUTE, None)
    if function is None or registered is None:
        raise ValueError(f"'{name}' is not a hook")
    if registered != point:
        raise ValueError(f"'{name}' is a hook for '{registered}', not for '{point}'")
    return function
