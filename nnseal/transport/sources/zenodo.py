"""Zenodo: ``doi:10.5281/zenodo.N[/FILE]`` and ``zenodo://RECORD[/FILE]`` through the records API.

``GET {base}/api/records/N`` answers the record: ``files[]`` with ``key`` (the file name),
``size``, ``checksum`` ("md5:HEX") and ``links.content`` or ``links.self`` (the bytes). A DOI
10.5281/zenodo.N names record N; a concept DOI (all versions) names the concept record,
which Zenodo redirects to its latest version: the report says which record was installed.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin

from nnseal.errors import NetworkError
from nnseal.transport.fetch import DownloadPolicy, parse_host_digest
from nnseal.transport.sources import Remote, Source, choose_file
from nnseal.transport.sources.api import NotFound, get_json

PUBLISHER = "Zenodo"


def resolve_zenodo(source: Source, base: str, policy: DownloadPolicy) -> Remote:
    api = f"{base.rstrip('/')}/api/records/{source.record}"
    try:
        record, final_url = get_json(api, policy)
    except NotFound:
        raise NetworkError(f"Zenodo has no record {source.record} ({source.text})") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), list):
        raise NetworkError(f"the answer of {api} is not a Zenodo record (no files list)")
    files = {}
    for entry in record["files"]:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            files[entry["key"]] = entry
    record_id = str(record.get("id", source.record))
    where = f"Zenodo record {record_id}"
    name = choose_file(source, list(files), where)
    entry = files[name]
    links = entry["links"] if isinstance(entry.get("links"), dict) else {}
    link = links.get("content") or links.get("self")
    if not isinstance(link, str):
        # The record's own file route, as Zenodo serves it.
        link = f"{base.rstrip('/')}/api/records/{record_id}/files/{quote(name)}/content"
    elif link.rstrip("/").endswith(f"/files/{quote(name)}") or link.rstrip("/").endswith(f"/files/{name}"):
        link = link.rstrip("/") + "/content"  # links.self of a file entry is its metadata
    size = entry.get("size") if isinstance(entry.get("size"), int) else None
    digest = parse_host_digest(entry.get("checksum"), PUBLISHER)
    return Remote(source.text, urljoin(final_url, link), name, size, digest, resolved=f"zenodo://{record_id}/{name}")
