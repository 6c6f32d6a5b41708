"""Differential tests: whatever nnseal's zip reader accepts, zipfile, torch's reader and unzip read the same.

Real archives (a torch.save checkpoint shaped like nnU-Net's, a signed nnseal package, a zip as
nnUNetv2_export_model_to_zip writes it) and hypothesis-driven structural mutations of them
(fuzz/zip_differential.py: comments, end records, ZIP64 fields, offsets, extra fields, names,
flags, data descriptors, bytes before, between and after). For every input either nnseal refuses
it, or every reader lists the same entries with the same bytes. The long run is
fuzz/fuzz_zip_differential.py.
"""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import zipfile
from pathlib import Path

import hostile_zips as hz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz import zip_differential as zd  # noqa: E402

DIFFERENTIAL = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_unzip_is_installed():
    """The differential tests need Debian's Info-ZIP unzip (.ci/run installs it)."""
    assert os.access(zd.UNZIP, os.X_OK), f"{zd.UNZIP} is missing: apt-get install unzip"


def nnunet_export_zip(model_folder: Path) -> bytes:
    """A zip as nnUNetv2_export_model_to_zip writes one: zipfile, deflated, paths below the results folder."""
    buf = io.BytesIO()
    root = model_folder.parent.parent
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(toy_package_session, toy_results_session) -> dict[str, bytes]:
    from nnseal import toy_model

    model = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as archive:  # small enough to hide in a comment
        archive.writestr(f"{toy_model.DATASET}/plans.json", b'{"hidden": true}')
        archive.writestr(f"{toy_model.DATASET}/notes.txt", hz.PAYLOAD)
    return {
        "checkpoint": (model / "fold_0" / "checkpoint_final.pth").read_bytes(),
        "package": toy_package_session.read_bytes(),
        "nnunet_export": nnunet_export_zip(model),
        "small": small.getvalue(),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("differential")


@pytest.mark.parametrize("name", ["checkpoint", "package", "nnunet_export", "small"])
def test_real_archives_read_the_same_by_every_reader(name, seeds, work):
    path = work / f"{name}.zip"
    path.write_bytes(seeds[name])
    assert zd.read_nnseal(path) is not None, "nnseal refuses a real archive"
    assert zd.disagreements(path) == []
    assert zd.write(zd.parse(seeds[name])) == seeds[name], "the mutation model does not round-trip"


def test_torch_refuses_archives_that_are_not_checkpoints(seeds, work):
    """For packages and export zips the torch comparison is skipped only because torch cannot open them."""
    for name in ("package", "nnunet_export"):
        path = work / f"{name}.zip"
        path.write_bytes(seeds[name])
        with pytest.raises(RuntimeError):
            zd.read_torch(path)


@pytest.mark.parametrize("attack", sorted(set(hz.ATTACKS) | set(hz.AMBIGUITY_ATTACKS)))
def test_hostile_zip_generators_are_refused_or_read_alike(attack, seeds, work):
    entries = [("model/plans.json", b'{"a": 1}'), ("model/weights.bin", bytes(range(256)) * 4)]
    make = hz.ATTACKS.get(attack) or hz.AMBIGUITY_ATTACKS[attack]
    path = make(work / f"{attack}.zip", entries)
    assert zd.disagreements(path) == []


@DIFFERENTIAL
@given(name=st.sampled_from(["checkpoint", "package", "nnunet_export"]), seed=st.integers(0, 2**32 - 1))
def test_mutated_archive_is_refused_or_read_alike(seeds, work, name, seed):
    data = zd.mutate(seeds[name], random.Random(seed), hidden=seeds["small"])
    path = work / "mutated.zip"
    path.write_bytes(data)
    assert zd.disagreements(path) == [], f"nnseal accepts what another reader reads differently (seed {seed})"


# --- what the differential run found, kept as regressions ---------------------------------------------


def _with_local_field(data: bytes, entry: int, offset: int, value: int) -> bytes:
    model = zd.parse(data)
    struct.pack_into("<I", model.locals[entry].fixed, offset, value)
    return zd.write(model)


@pytest.mark.parametrize("field", ["compressed", "uncompressed"])
def test_local_header_with_one_zip64_marker_refused(field, seeds, work):
    """Found by the mutation run: nnseal's packages mark both local sizes 0xFFFFFFFF and give them in the
    ZIP64 field. With one of them set to 0, nnseal read both from the ZIP64 field, unzip took the other from
    the header (stored entry: 'ucsize 50024 <> csize 0', a bad CRC; deflated: invalid compressed data)."""
    offset = 18 if field == "compressed" else 22
    path = work / f"one_marker_{field}.zip"
    path.write_bytes(_with_local_field(seeds["package"], 3, offset, 0))
    assert zd.read_nnseal(path) is None
    from nnseal.errors import HostileArchive
    from nnseal.readers.zip_archive import open_zip

    with pytest.raises(HostileArchive, match="marks only one size as ZIP64"):
        open_zip(path)


def test_entry_needing_version_63_refused_because_unzip_skips_it(work):
    """zipfile extracts an entry that 'needs' zip 6.3; unzip skips it (exit 81)."""
    path = hz.make_version_needed_63(work / "v63.zip", [("a.json", b"{}"), ("b.bin", b"data")])
    assert zd.read_nnseal(path) is None
    with pytest.raises(ValueError, match="exit 81"):
        zd.read_unzip(path)
