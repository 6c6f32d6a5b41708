"""One way to show a byte count to a person: IEC binary units with one decimal.

Machine-readable output (``--json``) always carries the exact integer instead. Every command's
text output and the progress bars go through ``format_bytes``, so the same file never shows
as MB in one place and MiB in another.
"""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: int | float) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``, ``3.2 GiB`` (1 KiB = 1024 B)."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = float(n)
    unit = "B"
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    # 1023.96 KiB would print as "1024.0 KiB": carry it to the next unit.
    if round(abs(value), 1) >= 1024 and unit != _UNITS[-1]:
        value /= 1024
        unit = _UNITS[_UNITS.index(unit) + 1]
    return f"{value:.1f} {unit}"
