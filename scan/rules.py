"""Every rule the scan applies: id, level and what it means. docs/SCAN.md mirrors this table (a test checks)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Level(str, Enum):
    """How bad a finding is, lowest to highest; `--fail-on LEVEL` fails on LEVEL or above."""

    NOTE = "note"
    WARNING = "warning"
    UNSIGNED = "unsigned"
    UNSAFE = "unsafe"

    # Equal to, and hashed like, its text: tables keyed by "unsafe" find Level.UNSAFE.
    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    summary: str


_TABLE = [
    # pickles (checkpoints' data.pkl, raw pickles, numpy object payloads, legacy torch files)
    Rule("dangerous-global", Level.UNSAFE,
         "A pickle imports a callable that runs commands, evaluates code, imports modules, opens files or "
         "sockets, or loads another pickle."),
    Rule("global-not-allowlisted", Level.UNSAFE,
         "A pickle imports a global outside torch's weights_only set plus nnseal's numpy additions: "
         "torch.load(weights_only=True) refuses it and plain pickle would import and may call it."),
    Rule("pickle-opcode", Level.UNSAFE,
         "A checkpoint's data.pkl uses opcodes torch.save never writes (protocol 4/5 framing, INST/OBJ, ...): "
         "scanner evasion or a file weights_only cannot load."),
    Rule("pickle-anomaly", Level.UNSAFE,
         "A pickle is built in a way no pickler writes (memo reads of unset slots, bytes after STOP, a stack "
         "left with several items)."),
    Rule("malformed-pickle", Level.UNSAFE,
         "A pickle cannot be parsed (truncated, unknown opcode) or is over the scan limits."),
    # archives
    Rule("hostile-archive", Level.UNSAFE,
         "A zip that readers would disagree on or that attacks extractors: duplicate names, local/central "
         "header mismatch, overlapping entries, lying sizes, symlink entries, bombs."),
    Rule("archive-layout", Level.UNSAFE,
         "A torch.save zip with an unexpected layout: several archive folders, entries outside them, "
         "unexpected records, directory entries, compressed storages."),
    Rule("torchscript", Level.UNSAFE,
         "A TorchScript archive (torch.jit.save): loading it runs its code."),
    Rule("storage-mismatch", Level.UNSAFE,
         "A storage record whose size disagrees with data.pkl, is missing, or is never used (hidden data)."),
    Rule("tensor-geometry", Level.UNSAFE,
         "A tensor declared in data.pkl reads outside its storage, or is a stride-0/overlapping view that "
         "expands a few stored bytes into a huge tensor."),
    Rule("legacy-format", Level.WARNING,
         "A pre-1.6 (non-zip) torch.save file: its pickles are scanned, but nnseal sanitize does not load "
         "this format; re-save it in a trusted environment."),
    # numpy
    Rule("numpy-object-array", Level.UNSAFE,
         "A .npy (or .npz member) holding an object array: numpy.load needs allow_pickle=True, which "
         "unpickles the data."),
    Rule("numpy-header", Level.UNSAFE,
         "A .npy header that cannot be parsed or is over the size limit."),
    # safetensors
    Rule("safetensors-header", Level.UNSAFE,
         "A safetensors header the Rust loader would refuse: oversized, not JSON, duplicate keys, gaps, "
         "overlaps, wrong byte counts, trailing bytes."),
    # packages
    Rule("bad-signature", Level.UNSAFE,
         "An nnseal package whose model.sig is malformed or does not verify."),
    Rule("tampered-package", Level.UNSAFE,
         "An nnseal package whose entries disagree with the signed manifest (modified, missing, extra) or "
         "lie outside the package layout."),
    Rule("package-content", Level.UNSAFE,
         "An nnseal package whose JSON or checkpoint headers install would refuse (an architecture class "
         "outside the allowlist, absolute paths, malformed safetensors headers or nnseal metadata)."),
    Rule("unsigned-package", Level.UNSIGNED, "An nnseal package without model.sig."),
    Rule("unknown-signer", Level.UNSIGNED,
         "An nnseal package signed by a key that is neither among the trusted keys given to the scan "
         "nor in the trust folder."),
    Rule("nnunet-postprocessing", Level.NOTE,
         "A postprocessing.pkl that names only nnU-Net's own postprocessing functions and otherwise holds "
         "plain data (lists, tuples, dicts, strings, numbers): what nnseal install rebuilds from "
         "postprocessing.json. Loading it imports that nnunetv2 module and calls nothing."),
    Rule("nnunet-export-zip", Level.UNSIGNED,
         "nnU-Net's own export zip (unsigned, pickle checkpoints); its members are scanned. "
         "Share models with `nnseal export` instead."),
    # what loaders would read
    Rule("polyglot", Level.UNSAFE,
         "A file with more than one valid reading (e.g. safetensors or .npy and at once a legacy torch tar, or "
         "a pickle): the loader that opens it may see other content than the one checked."),
    Rule("model-format", Level.UNSAFE,
         "A file named like a model file (.pth, .pt, .ckpt, .bin, .tar, .pkl, .pickle, .joblib), or a pickle or "
         "legacy torch file in an nnU-Net fold folder, that is not a torch.save zip, safetensors or an nnseal "
         "package: torch.load would fall back to a legacy tar or a raw pickle."),
    Rule("numpy-dtype", Level.UNSAFE,
         "A .npy header whose dtype spelling nnseal does not resolve to a plain numeric, boolean, bytes or "
         "unicode type: numpy may read it as an object dtype, which unpickles."),
    # what could not be checked
    Rule("unrecognized-model-file", Level.UNSAFE,
         "A file named like a model file (.pth, .pt, .ckpt, .pkl, .npy, .npz, .safetensors, ...) whose content "
         "is no format nnseal recognises (empty, truncated, garbage): a gate does not pass what it cannot check."),
    Rule("not-checked", Level.UNSAFE,
         "Content nnseal recognises but cannot check statically (legacy tar checkpoints, pickles over 64 MiB, "
         "archives nested too deep)."),
    Rule("unreadable", Level.UNSAFE, "A file or folder that could not be read."),
    Rule("symlink", Level.NOTE, "A symbolic link: never followed; scan its target on its own if it matters."),
    Rule("not-regular-file", Level.NOTE, "A FIFO, socket or device: skipped."),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _TABLE}
