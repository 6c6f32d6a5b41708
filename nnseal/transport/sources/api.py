"""One JSON request to a host's REST API (Zenodo, GitHub) with ``requests``, bounded and retried.

The answer is untrusted JSON: read with the strict loader, at most ``MAX_ANSWER`` bytes.
Retries connection errors, timeouts, 429 and 5xx with the download policy's backoff;
redirects are followed (Zenodo sends a concept record to its latest version) but never from
https to http. requests honours HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE by itself.
"""

from __future__ import annotations

import time
from typing import Any

from nnseal import __version__
from nnseal.errors import NetworkError
from nnseal.format.strict_json import load_strict_json
from nnseal.transport.fetch import DownloadPolicy, redact, retry_after_seconds

MAX_ANSWER = 16 << 20


class NotFound(NetworkError):
    """The API answered 404: the record, release or tag does not exist (or is not visible)."""


def get_json(url: str, policy: DownloadPolicy, *, headers: dict[str, str] | None = None) -> tuple[Any, str]:
    """``(parsed JSON, final URL)`` of a GET on ``url``; NotFound on 404, NetworkError otherwise."""
    body, final_url = get_bytes(url, policy, headers={"Accept": "application/json", **(headers or {})})
    return load_strict_json(body, what=f"the answer of {redact(url)}", error=NetworkError), final_url


def get_bytes(url: str, policy: DownloadPolicy, *, headers: dict[str, str] | None = None,
              max_bytes: int = MAX_ANSWER) -> tuple[bytes, str]:
    """``(body, final URL)`` of a GET on ``url``, at most ``max_bytes``; NotFound on 404."""
    import requests

    sent = {"User-Agent": f"nnseal/{__version__}", **(headers or {})}
    failures = 0
    while True:
        try:
            with requests.get(url, headers=sent, stream=True, allow_redirects=True,
                              timeout=(policy.connect_timeout, policy.read_timeout)) as response:
                if url.lower().startswith("https:") and any(
                        hop.url.lower().startswith("http:") for hop in [*response.history, response]):
                    raise NetworkError(f"{redact(url)} redirected from https to plain http; refused")
                status = response.status_code
                if status == 200:
                    body = response.raw.read(max_bytes + 1, decode_content=True)
                    if len(body) > max_bytes:
                        raise NetworkError(f"the answer of {redact(url)} is over {max_bytes} bytes")
                    return body, response.url
                message = f"HTTP {status} {response.reason or ''} for {redact(response.url)}".replace("  ", " ")
                if status == 404:
                    raise NotFound(message.rstrip())
                if status != 429 and status < 500:
                    raise NetworkError(message.rstrip())
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                problem = message.rstrip()
        except requests.exceptions.SSLError:
            # A certificate that fails today fails on every retry: say so at once.
            raise NetworkError(f"could not reach {redact(url)}: TLS failed (certificate not trusted?)") from None
        except requests.exceptions.RequestException as err:
            retry_after = None
            problem = f"could not reach {redact(url)}: {type(err).__name__}"
        failures += 1
        if failures > policy.retries:
            raise NetworkError(f"{problem} (gave up after {failures} attempts)")
        wait = retry_after if retry_after is not None else policy.backoff * 2 ** (failures - 1)
        time.sleep(min(wait, policy.max_wait))
