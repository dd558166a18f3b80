"""One way to reject bad input: the error names the parameter, the value given and the rule it broke."""
from __future__ import annotations

from typing import Any


def check(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raise ``ValueError("name=value is not allowed: rule")`` unless ``ok``.

    >>> check(3 > 0, "window", 3, "window must be >= 1")  # passes silently
    """
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: {rule}")


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) within ``[minimum, maximum]`` and return it."""
    ok_type = isinstance(value, int) and not isinstance(value, bool)
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    rule = f"{name} must be an integer{lo}{' and' if lo and hi else ''}{hi}"
    check(ok_type, name, value, rule)
    check((minimum is None or value >= minimum) and (maximum is None or value <= maximum), name, value, rule)
    return value
