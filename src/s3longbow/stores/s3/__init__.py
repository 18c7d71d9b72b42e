"""S3 and S3-compatible endpoints: the store (the control plane and the quirks of the
servers) over one data plane, the lean HTTP/1.1 client.

Modules, from the wire up: :mod:`stream` (a socket read through a buffer, at a pace),
:mod:`http1` (replies framed by RFC 9112), :mod:`dial` (connections, proxies, TLS),
:mod:`connection` (one request on one kept connection), :mod:`signing` (SigV4),
:mod:`wire` (URL encoding and XML), :mod:`client` (exchanges: signing, redirects, error
meanings), :mod:`lean` (the data calls), :mod:`plane` (the data plane's protocol),
:mod:`paging` (where a listing goes on), :mod:`headers` (properties as headers),
:mod:`session` (botocore: credentials, the control plane's client, trust), :mod:`restores`
(asking for archived objects' restores), :mod:`store`.
"""

from s3longbow.stores.s3.store import S3Store

__all__ = ["S3Store"]
