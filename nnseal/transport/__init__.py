"""Transport: bring a package's bytes from where they are published into a local temporary file.

- ``fetch``: ``fetch_to_temp`` (http, https and file URLs), ``DownloadPolicy`` (timeouts,
  retries, size limit, overall deadline, minimum transfer rate), the hashing byte sink;
- ``http_fetch``: http(s) transfers (retries, resume, redirects, no Content-Encoding).

Sources of other kinds go here, beside them. Transport knows nothing of packages: it
imports nothing from ``nnseal.verify`` or ``nnseal.package``; ``nnseal.verify.download``
fetches with it, then installs. Torch-free; ``requests`` is imported only for http(s).
"""
