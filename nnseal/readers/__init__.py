"""Readers of untrusted bytes: one torch-free reader per format, shared by every stage.

sanitize, scan, verify and install read a file through the same reader, so they cannot
disagree about what it holds; sanitize stops at the first problem, scan reports them all.

- ``zip_archive``: the zip container (``SafeZip``): one reading only, or a refusal;
- ``torch_archive``: torch.save's zip checkpoint layout, storages and data.pkl;
- ``legacy_tar``: torch.save's pre-zip formats, recognised as torch.load recognises them;
- ``pickle_ops``: pickle opcodes and their arguments as CPython's C unpickler reads them;
- ``pickle_stream``: a static walk over a pickle's opcodes (nothing is unpickled);
- ``allowlist``: the globals ``torch.load(weights_only=True)`` accepts, plus nnU-Net's few;
- ``safetensors_header``: a safetensors header, as strictly as the Rust loader;
- ``npy_header``: a numpy ``.npy`` header and its dtype.

Each has a fuzz target in ``fuzz/`` and differential tests against the real loader where
one exists (zipfile, torch's reader and unzip for zips; the C unpickler for pickles).
"""
