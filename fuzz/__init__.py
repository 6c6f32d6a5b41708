"""Fuzz targets for every nnseal parser of untrusted input (see fuzz/README.md).

``fuzz.targets`` is torch-free and shared by the atheris scripts and tests/test_fuzz.py;
``fuzz.seeds`` builds valid seed inputs from a real toy model (needs torch).
"""
