"""One function per parser of untrusted input: feed it bytes, it runs the parser as nnseal does.

The contract every target checks: whatever the bytes, the parser either returns a
result or raises an ``NnsealError`` (a one-line refusal). Anything else escaping (a
``TypeError``, ``RecursionError``, ``AssertionError`` from an invariant below, ...) is
a bug. ``run_target`` is the one place that tells the two apart; the atheris scripts
and tests/test_fuzz.py both call it. Hangs and memory are policed by the caller
(libFuzzer's -timeout/-rss_limit_mb, or the tests' timers and tracemalloc).

Torch-free, like the parsers: importing this module must not import torch.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nnseal.errors import NnsealError

TARGET_NAMES = ("safezip", "signature", "safetensors", "pickle", "json", "checkpoint_archive", "receipt")
# Entries up to this size are also read whole and compared with their streamed hash.
_READ_WHOLE_MAX = 1 << 20

_scratch_dir: Path | None = None


def scratch_dir() -> Path:
    """One private folder per process for targets whose parser takes a path."""
    global _scratch_dir
    if _scratch_dir is None:
        _scratch_dir = Path(tempfile.mkdtemp(prefix="nnseal-fuzz-"))
        atexit.register(shutil.rmtree, _scratch_dir, True)
    return _scratch_dir


def _as_file(data: bytes, name: str) -> Path:
    path = scratch_dir() / name
    path.write_bytes(data)
    return path


def _expected(call: Callable[[], object]) -> object | None:
    """Run one stage; a refusal is an expected outcome, so later stages still run."""
    try:
        return call()
    except NnsealError:
        return None


# --- zip reader (and the package entry-name classifier) ------------------------------


def fuzz_safezip(data: bytes) -> None:
    import hashlib

    from nnseal.format.layout import classify
    from nnseal.readers.zip_archive import open_zip

    with open_zip(_as_file(data, "input.zip")) as archive:
        hashes = _expected(archive.sha256_all)
        for entry in archive.entries:
            if not entry.is_dir:
                _expected(lambda entry=entry: classify(entry.name))
            if entry.is_dir or entry.size > _READ_WHOLE_MAX:
                continue
            whole = _expected(lambda entry=entry: archive.read(entry))
            if whole is not None:
                assert len(whole) == entry.size, "read() returned a size other than the validated one"
                if hashes is not None:
                    assert hashlib.sha256(whole).hexdigest() == hashes[entry.name], "read() and sha256_all disagree"


# --- signature / manifest ----------------------------------------------------------------

_signing_key = None


def _key():
    """A fixed-for-the-process P-256 key: the fuzzer's own trusted signer."""
    global _signing_key
    if _signing_key is None:
        from cryptography.hazmat.primitives.asymmetric import ec

        _signing_key = ec.generate_private_key(ec.SECP256R1())
    return _signing_key


def signed_bundle(payload: bytes, private_key) -> bytes:
    """A well-formed bundle whose signature covers ``payload``: lets the fuzzer reach the statement parser
    past the signature check, as a trusted but careless (or compromised) signer could."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from nnseal.format.keys import fingerprint
    from nnseal.format.oms import BUNDLE_MEDIA_TYPE, PAYLOAD_TYPE, pae

    signature = private_key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": fingerprint(private_key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}]},
    }
    return json.dumps(bundle).encode("ascii")


def fuzz_signature(data: bytes) -> None:
    """``data`` as a whole model.sig, then as the signed statement inside a bundle signed by a trusted key."""
    from nnseal.verify.signature import read_bundle_unverified, verify_bundle

    trusted = [_key().public_key()]
    _expected(lambda: read_bundle_unverified(data))
    _expected(lambda: verify_bundle(data, trusted))

    bundle = signed_bundle(data, _key())
    verified = _expected(lambda: verify_bundle(bundle, trusted))
    unverified = _expected(lambda: read_bundle_unverified(bundle))
    assert (verified is None) == (unverified is None), "verify and read disagree on a correctly signed statement"
    if verified is not None:
        assert verified.verified and not unverified.verified
        assert verified.resources == unverified.resources and verified.model_name == unverified.model_name


# --- safetensors header --------------------------------------------------------------------


def fuzz_safetensors(data: bytes) -> None:
    from nnseal.readers.safetensors_header import read_header

    header = read_header(io.BytesIO(data), len(data), source="input.safetensors")
    assert header.data_start + header.data_size == len(data), "accepted header does not tile the file"
    for info in header.tensors.values():
        assert 0 <= info.begin <= info.end <= header.data_size


# --- pickle walker and checkpoint archive ----------------------------------------------------


def fuzz_pickle(data: bytes) -> None:
    from nnseal.readers.pickle_stream import scan_pickle

    scan = scan_pickle(data, source="input.pkl")
    assert all(isinstance(name, str) for name in scan.globals)
    repr(scan.persistent_ids)  # torch_archive prints them in refusals: must not blow the stack


def fuzz_checkpoint_archive(data: bytes) -> None:
    from nnseal.readers.torch_archive import inspect_checkpoint

    inspect_checkpoint(_as_file(data, "input.pth"))


# --- JSON sanitizer (and the package card, read with the same parser) -----------------------


def fuzz_json(data: bytes) -> None:
    """Parse as any JSON file, then clean as each of plans/dataset/fingerprint; cleaning must be idempotent."""
    from nnseal.sanitize.jsonclean import JSON_KINDS, clean_json_file, load_json_bytes

    load_json_bytes(data, name="input.json")
    for kind in JSON_KINDS:
        cleaned = _expected(lambda kind=kind: clean_json_file(kind, data, name=f"{kind}.json"))
        if cleaned is None:
            continue
        written = cleaned.to_bytes()
        again = clean_json_file(kind, written, name=f"{kind}.json")  # nnseal's own output must pass
        # Compared as bytes: NaN != NaN would make equal trees compare unequal.
        assert again.to_bytes() == written, f"cleaning {kind} is not idempotent"
        assert not again.findings, f"cleaned {kind} still has findings: {again.findings[:1]}"


# --- install receipt -------------------------------------------------------------------------


def fuzz_receipt(data: bytes) -> None:
    from nnseal.verify.receipt import RECEIPT_NAME, check_installed

    folder = scratch_dir() / "installed"
    if not folder.exists():
        (folder / "fold_0").mkdir(parents=True)
        (folder / "plans.json").write_bytes(b"{}")
        (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / RECEIPT_NAME).write_bytes(data)
    check_installed(folder)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "safezip": fuzz_safezip,
    "signature": fuzz_signature,
    "safetensors": fuzz_safetensors,
    "pickle": fuzz_pickle,
    "json": fuzz_json,
    "checkpoint_archive": fuzz_checkpoint_archive,
    "receipt": fuzz_receipt,
}
assert tuple(TARGETS) == TARGET_NAMES


def run_target(name: str, data: bytes) -> bool:
    """Run one input; True if it was accepted, False if refused with an NnsealError. Anything else propagates."""
    try:
        TARGETS[name](bytes(data))
    except NnsealError:
        return False
    return True
