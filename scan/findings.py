"""What the scan reports: one Finding per problem, each under a rule with a fixed level."""

from __future__ import annotations

from dataclasses import dataclass

from nnseal.scan.rules import RULES, Level

# Lowest to highest; `--fail-on LEVEL` fails on a finding at LEVEL or above.
LEVELS: tuple[Level, ...] = tuple(Level)
_RANK = {level: rank for rank, level in enumerate(LEVELS)}

# --fail-on choices -> the lowest level that fails the gate.
FAIL_ON: dict[str, Level] = {"unsafe": Level.UNSAFE, "unsigned": Level.UNSIGNED, "any": Level.NOTE}


def level_at_least(level: Level | str, threshold: Level | str) -> bool:
    return _RANK[Level(level)] >= _RANK[Level(threshold)]


@dataclass(frozen=True)
class Location:
    """A file on disk, or a member inside it (``a.zip`` + ``fold_0/checkpoint_final.pth``).

    Members of members (a checkpoint zip inside an nnU-Net zip) are joined with ``!``,
    as in jar URLs, because ``/`` already separates folders inside one archive.
    """

    path: str
    member: str | None = None

    def inside(self, name: str) -> Location:
        return Location(self.path, name if self.member is None else f"{self.member}!{name}")

    def __str__(self) -> str:
        return self.path if self.member is None else f"{self.path}:{self.member}"


@dataclass(frozen=True)
class Finding:
    path: str
    member: str | None
    rule: str
    level: Level
    message: str

    def to_json(self) -> dict:
        return {"path": self.path, "member": self.member, "rule": self.rule, "level": self.level,
                "message": self.message}

    def text_line(self) -> str:
        where = self.path if self.member is None else f"{self.path}:{self.member}"
        return f"{self.level.upper()} {where}: {self.rule}: {self.message}"


def finding(where: Location, rule: str, message: str) -> Finding:
    """A finding under ``rule``; its level is the rule's, so that one table decides severity."""
    return Finding(path=where.path, member=where.member, rule=rule, level=RULES[rule].level,
                   message=" ".join(message.split()))
