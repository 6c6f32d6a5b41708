"""Rollback protection: a validly signed *older* release must not silently replace a newer one.

An attacker who cannot sign can still replay an old package the signer once published
(one with a known flaw, or a worse model). So install compares the package's release and
creation time (the card's ``model.release`` and ``model.created``) with what the receipt
of the installed model folder records, and refuses an older one from the same signer
unless the caller allows the downgrade.

Order: the releases decide when both read as versions (PEP 440, or dotted numbers with an
optional leading "v") and differ; otherwise (same release, a release missing, or one that
is not a version) the creation times decide; when either is unknown, nothing is refused.
Only a model folder whose receipt says it was installed signed by the same key is compared:
another signer's numbering says nothing about this one's. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnseal.errors import Downgrade, Hint, Refused
from nnseal.format.card import parse_created
from nnseal.format.strict_json import show

# PEP 440's grammar, case-insensitive, without local versions ("+local" sorts by rules of its own).
_VERSION_RE = re.compile(
    r"""^v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)
        (?:[-_.]?(?P<pre>a|alpha|b|beta|c|rc|pre|preview)[-_.]?(?P<pre_n>\d*))?
        (?:-(?P<post_implicit>\d+)|[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d*))?
        (?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d*))?$""",
    re.IGNORECASE | re.VERBOSE)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_FINAL = 3  # ranks after every pre-release phase


@dataclass(frozen=True)
class Release:
    """What a card or receipt says about when a model was made."""

    release: str | None
    created: str | None

    def describe(self) -> str:
        release = f"release {show(self.release)}" if self.release is not None else "no release"
        return f"{release} (created {self.created or 'unknown'})"


def version_key(text: str | None) -> tuple | None:
    """A sort key for a release string read as a PEP 440 version (``1.2``, ``v2.0rc1``,
    ``2024.05.post1``), or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _VERSION_RE.match(text.strip())
    if match is None:
        return None
    numbers = [int(part) for part in match["release"].split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 1.0 == 1.0.0
        numbers.pop()
    has_post = match["post_implicit"] is not None or match["post"] is not None
    if match["pre"]:
        pre: tuple = (_PRE_RANK[match["pre"].lower()], int(match["pre_n"] or 0))
    elif match["dev"] and not has_post:
        pre = (-1, 0)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (_FINAL, 0)
    post = int(match["post_implicit"] or match["post_n"] or 0) if has_post else -1
    dev = (0, int(match["dev_n"] or 0)) if match["dev"] else (1, 0)
    return (int(match["epoch"] or 0), tuple(numbers), pre, post, dev)


def is_older(new: Release, installed: Release) -> bool:
    """Whether ``new`` is an older release than ``installed`` (see the module's docstring)."""
    new_key, old_key = version_key(new.release), version_key(installed.release)
    if new_key is not None and old_key is not None and new_key != old_key:
        return new_key < old_key
    new_time, old_time = parse_created(new.created or ""), parse_created(installed.created or "")
    if new_time is None or old_time is None:
        return False
    return new_time < old_time


def release_of_card(card: Mapping[str, Any] | None) -> Release:
    model = card.get("model") if isinstance(card, Mapping) else None
    model = model if isinstance(model, Mapping) else {}
    return Release(_text(model.get("release")), _text(model.get("created")))


def installed_release(model_dir: Path, signer_fingerprint: str) -> Release | None:
    """What the receipt of ``model_dir`` records, when ``signer_fingerprint`` installed it signed;
    None for a folder without a (readable) receipt, installed unsigned, or by another signer."""
    from nnseal.verify.receipt import Provenance, read_receipt

    try:
        receipt = read_receipt(model_dir)
    except Refused:
        return None
    if receipt.get("provenance") != Provenance.SIGNED.value or receipt.get("signer_fingerprint") != signer_fingerprint:
        return None
    # Receipts written before "release"/"created" were recorded on their own hold the card's model.
    model = receipt["model"] if isinstance(receipt.get("model"), dict) else {}
    return Release(_text(receipt.get("release", model.get("release"))),
                   _text(receipt.get("created", model.get("created"))))


def check_not_downgrade(destinations: Mapping[str, Path], *, card: Mapping[str, Any] | None,
                        signer_fingerprint: str, allow_downgrade: bool = False) -> None:
    """Refuse (``Downgrade``) to replace an installed model folder (``destinations``: model ->
    its folder) with an older release from the same signer, unless ``allow_downgrade``."""
    if allow_downgrade:
        return
    new = release_of_card(card)
    for model, dest in sorted(destinations.items()):
        if not dest.is_dir() or dest.is_symlink():
            continue
        installed = installed_release(dest, signer_fingerprint)
        if installed is not None and is_older(new, installed):
            raise Downgrade(f"{model}: the package holds {new.describe()}, older than the installed "
                            f"{installed.describe()} from the same signer", path=dest, hint=Hint.ALLOW_DOWNGRADE)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
