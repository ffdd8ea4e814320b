"""One TLS context per process for every httpx client.

httpx builds a verifying `SSLContext` for each client it creates, parsing certifi's bundle
anew: about 35 ms of CPU on the 2-core VM. The suites create clients by the hundred (one a
test for the settle check alone) and every service creates one as it starts, nearly all
for plain http:// on the loopback. They share this one instead: it verifies exactly as
httpx's default does (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()
