"""The Hugging Face Hub: ``hf://OWNER/REPO[@REVISION][/PATH]`` through ``huggingface_hub``.

``HfApi.model_info(files_metadata=True)`` resolves the revision (a branch, tag or commit;
default ``main``) to its commit and lists the files with their size and, for files stored
with LFS (a .zip is, by the Hub's default .gitattributes), the sha256 of their content.
The file is then fetched from ``hf_hub_url`` at that commit, never at the branch: what was
listed is what is fetched, even if the branch moves meanwhile. The bytes go through
nnseal's own fetcher (its limits, resume, and the temporary file in the results folder),
not huggingface_hub's cache.

huggingface_hub reads its own settings from the environment (HF_ENDPOINT when no endpoint is
given, HF_TOKEN, HF_HUB_OFFLINE, proxies and CA bundle through httpx); this module reads none.

A folder package (``nnseal export --folder`` uploaded as it is: its files, model.sig and
nnseal-card.json at the top of the repository or of ``PATH``) resolves to a ``Snapshot``:
one ``Remote`` per file under that folder, each at the commit, with its LFS sha256 where
the Hub publishes one. Which of them are fetched is the signature's to say
(``nnseal.verify.snapshot``): nothing else in the repository is downloaded.
"""

from __future__ import annotations

from nnseal.errors import NetworkError
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.transport.fetch import HostDigest
from nnseal.transport.sources import Remote, Snapshot, Source, choose_package

PUBLISHER = "the Hugging Face Hub"


def resolve_hf(source: Source, *, endpoint: str | None, timeout: float) -> Remote:
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id = f"{source.owner}/{source.repo}"
    revision = source.revision or "main"
    api = HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    except RevisionNotFoundError:
        raise NetworkError(f"the Hugging Face Hub has no revision {revision!r} of {repo_id} ({source.text})") from None
    except GatedRepoError:
        raise NetworkError(f"{repo_id} on the Hugging Face Hub is gated: accept its terms and log in "
                           "(huggingface_hub's token)") from None
    except RepositoryNotFoundError:
        raise NetworkError(f"the Hugging Face Hub has no model repository {repo_id} (or it is private) "
                           f"({source.text})") from None
    except HfHubHTTPError as err:
        raise NetworkError(f"the Hugging Face Hub answered {_status(err)} for {repo_id}") from None
    except Exception as err:  # noqa: BLE001 - httpx's connection errors, timeouts, invalid answers
        raise NetworkError(f"could not reach the Hugging Face Hub for {repo_id}: {_words(err)}") from None
    commit = info.sha
    if not commit:
        raise NetworkError(f"the Hugging Face Hub gave no commit for {repo_id}@{revision}")
    siblings = {s.rfilename: s for s in info.siblings or []}
    name, is_folder = choose_package(source, list(siblings), f"{repo_id}@{revision} on the Hugging Face Hub")

    def remote(path: str) -> Remote:
        sibling = siblings[path]
        digest = None
        if sibling.lfs is not None and isinstance(sibling.lfs.sha256, str):
            value = sibling.lfs.sha256.lower()
            if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
                digest = HostDigest("sha256", value, PUBLISHER)
        size = sibling.size if isinstance(sibling.size, int) and sibling.size >= 0 else None
        url = hf_hub_url(repo_id, path, revision=commit, endpoint=endpoint)
        return Remote(source.text, url, path.rsplit("/", 1)[-1], size, digest,
                      resolved=f"hf://{repo_id}@{commit}/{path}")

    if not is_folder:
        return remote(name)
    prefix = f"{name}/" if name else ""
    files = {path[len(prefix):]: remote(path) for path in siblings if path.startswith(prefix)}
    signature = files[SIGNATURE_NAME]
    return Remote(source.text, signature.url, name.rsplit("/", 1)[-1] or repo_id.split("/")[1],
                  resolved=f"hf://{repo_id}@{commit}" + (f"/{name}" if name else ""),
                  snapshot=Snapshot(name, files))


def _status(err: Exception) -> str:
    response = getattr(err, "response", None)
    code = getattr(response, "status_code", None)
    return f"HTTP {code}" if code is not None else _words(err)


def _words(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:160] or type(err).__name__)
