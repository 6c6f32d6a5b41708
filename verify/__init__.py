"""Verify stage: check signature and hashes, refuse hostile zips, install atomically, download by URL."""
