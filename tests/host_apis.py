"""Local stand-ins for the hosts' APIs, on tests/http_server.py's TestServer (127.0.0.1).

Each speaks the routes and answer shapes the real host serves to the client nnseal uses:

* ``Hub``: the Hugging Face Hub as huggingface_hub calls it: GET
  /api/models/OWNER/REPO[/revision/REV][?blobs=True] (ModelInfo: id, sha, siblings with
  size, blobId and lfs {sha256, size, pointerSize}); /OWNER/REPO/resolve/REV/PATH (GET and
  HEAD: 302 to the CDN with X-Repo-Commit, X-Linked-Etag, X-Linked-Size); unknown revisions
  and repositories answer 404 with X-Error-Code RevisionNotFound / RepoNotFound, as the Hub does.
* ``Zenodo``: GET /api/records/N (id, conceptrecid, doi, files[] with key, size,
  checksum "md5:...", links.self .../files/KEY/content); a concept record id redirects to
  its latest version; the content route redirects to the CDN.
* ``GitHub``: GET /repos/O/R/releases/tags/TAG (tag_name, assets[] with name, size,
  digest "sha256:...", url, browser_download_url); the download URL redirects to the CDN.

File bytes are served by another TestServer (``cdn``), on another port: a redirect to
another host, as every real host does for large files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from http_server import Route, TestServer


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    body = json.dumps(data).encode()
    if status != 200:
        return Route(status=status, headers={"Content-Type": "application/json", **(headers or {})})
    return Route(body=body, headers={"Content-Type": "application/json", **(headers or {})})


def _hub_error(code: str, message: str, status: int = 404) -> Route:
    return Route(status=status, headers={"X-Error-Code": code, "X-Error-Message": message})


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    lfs_sha256: dict[str, str] = field(default_factory=dict)  # a digest the Hub publishes that differs


class Hub:
    def __init__(self, api: TestServer, cdn: TestServer):
        self.api, self.cdn = api, cdn
        self.repos: dict[str, HubRepo] = {}
        api.fallback = self._answer

    @property
    def endpoint(self) -> str:
        return self.api.url("").rstrip("/")

    def publish(self, repo_id: str, files: dict[str, bytes], **kwargs) -> HubRepo:
        repo = HubRepo(files, **kwargs)
        self.repos[repo_id] = repo
        for name, data in files.items():
            self.cdn.route(f"/hub-cdn/{repo.commit}/{name}", Route(body=data, etag=f'"{_sha256(data)}"'))
        return repo

    def _answer(self, path: str) -> Route | None:
        parts = urlsplit(path)
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", parts.path)
        if match:
            return self._model_info(match[1], unquote(match[2] or "main"), "blobs=true" in parts.query.lower())
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", parts.path)
        if match:
            return self._resolve(match[1], unquote(match[2]), unquote(match[3]))
        return None

    def _revision(self, repo_id: str, revision: str) -> tuple[HubRepo | None, Route | None]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, _hub_error("RepoNotFound", "Repository not found", 401)
        if revision not in (*repo.branches, repo.commit):
            return None, _hub_error("RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, None

    def _model_info(self, repo_id: str, revision: str, blobs: bool) -> Route:
        repo, error = self._revision(repo_id, revision)
        if error is not None or repo is None:
            return error or _hub_error("RepoNotFound", "Repository not found", 401)
        siblings = []
        for name, data in sorted(repo.files.items()):
            sibling: dict = {"rfilename": name}
            if blobs:
                sha = repo.lfs_sha256.get(name, _sha256(data))
                sibling.update(size=len(data), blobId=_git_oid(name),
                               lfs={"sha256": sha, "size": len(data), "pointerSize": 134})
            siblings.append(sibling)
        return _json({"_id": "x", "id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                      "disabled": False, "gated": False, "tags": [], "siblings": siblings,
                      "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z"})

    def _resolve(self, repo_id: str, revision: str, name: str) -> Route:
        repo, error = self._revision(repo_id, revision)
        if error is not None or repo is None:
            return error or _hub_error("RepoNotFound", "Repository not found", 401)
        if name not in repo.files:
            return _hub_error("EntryNotFound", f"{name} does not exist on \"{revision}\"")
        data = repo.files[name]
        return Route(status=302, location=self.cdn.url(f"/hub-cdn/{repo.commit}/{name}"), headers={
            "X-Repo-Commit": repo.commit, "X-Linked-Etag": f'"{repo.lfs_sha256.get(name, _sha256(data))}"',
            "X-Linked-Size": str(len(data)), "ETag": f'"{_git_oid(name)}"'})


class Zenodo:
    def __init__(self, api: TestServer, cdn: TestServer):
        self.api, self.cdn = api, cdn
        self.records: dict[int, dict] = {}

    @property
    def base(self) -> str:
        return self.api.url("").rstrip("/")

    def publish(self, record: int, files: dict[str, bytes], *, concept: int | None = None,
                md5: dict[str, str] | None = None) -> None:
        entries = []
        for name, data in files.items():
            content = self.api.url(f"/api/records/{record}/files/{quote(name)}/content")
            self.api.route(f"/api/records/{record}/files/{quote(name)}/content",
                           Route(status=302, location=self.cdn.url(f"/zenodo-cdn/{record}/{name}")))
            self.cdn.route(f"/zenodo-cdn/{record}/{name}", Route(body=data))
            entries.append({"id": f"f-{record}-{name}", "key": name, "size": len(data),
                            "checksum": f"md5:{(md5 or {}).get(name, _md5(data))}",
                            "links": {"self": content}})
        answer = {"id": record, "recid": str(record), "conceptrecid": str(concept or record),
                  "doi": f"10.5281/zenodo.{record}", "conceptdoi": f"10.5281/zenodo.{concept or record}",
                  "metadata": {"title": "toy"}, "files": entries,
                  "links": {"self": self.api.url(f"/api/records/{record}")}}
        self.records[record] = answer
        self.api.route(f"/api/records/{record}", _json(answer))
        if concept is not None:
            # Zenodo sends a concept record id to the record of its latest version.
            self.api.route(f"/api/records/{concept}", Route(status=302, location=f"/api/records/{record}"))


class GitHub:
    def __init__(self, api: TestServer, cdn: TestServer):
        self.api, self.cdn = api, cdn

    @property
    def base(self) -> str:
        return self.api.url("").rstrip("/")

    def publish(self, repo: str, tag: str, assets: dict[str, bytes], *, digests: dict[str, str | None] | None = None
                ) -> None:
        listed = []
        for number, (name, data) in enumerate(assets.items(), 1):
            download = f"/{repo}/releases/download/{tag}/{name}"
            self.api.route(download, Route(status=302, location=self.cdn.url(f"/gh-cdn/{number}/{name}")))
            self.cdn.route(f"/gh-cdn/{number}/{name}", Route(body=data))
            digest = (digests or {}).get(name, f"sha256:{_sha256(data)}")
            listed.append({"id": number, "name": name, "size": len(data), "digest": digest,
                           "content_type": "application/zip", "state": "uploaded",
                           "url": self.api.url(f"/repos/{repo}/releases/assets/{number}"),
                           "browser_download_url": self.api.url(download)})
        self.api.route(f"/repos/{repo}/releases/tags/{tag}",
                       _json({"id": 1, "tag_name": tag, "name": tag, "draft": False, "prerelease": False,
                              "assets": listed}))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _git_oid(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()  # a stand-in object id
