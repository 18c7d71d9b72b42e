"""Start and stop real local S3-compatible servers on 127.0.0.1.

Four kinds of server are supported, each a separate implementation with its own quirks, each
in its own module:

* ``seaweedfs``: ``weed mini``, a production object store in all-in-one mode.
* ``moto``: ``moto_server``, broad S3 semantics (plus SQS, DynamoDB and SSM on the same port);
  it does not validate Content-MD5.
* ``rclone``: ``rclone serve s3`` over a local directory; validates Content-MD5 but deviates
  from AWS in several ways (ranged GETs answer 200, no versioning, in-memory multipart uploads).
* ``rgw``: Ceph's RADOS Gateway on a throwaway single-node cluster (one monitor, one in-RAM
  OSD); a production server with its own deviations (an empty ETag from
  CompleteMultipartUpload, NoSuchKey for an aborted upload). Needs the Ceph packages and root.

Each server runs in its own session and process group, so :meth:`LocalServer.stop` stops
everything it spawned (``process``). Servers still running when the interpreter exits are
stopped by an ``atexit`` hook. Ports are drawn by ``ports``. POSIX only.

Example:
    A throwaway rclone server for one block of code::

        with start_rclone(tmp_dir / "rclone") as server:
            s3 = server.endpoint.client()
            s3.create_bucket(Bucket="demo")
            s3.put_object(Bucket="demo", Key="hello.txt", Body=b"hi")
"""

from __future__ import annotations

from .endpoint import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY, Endpoint
from .moto import reset_moto, start_moto
from .ports import SEAWEEDFS_GRPC_OFFSET, free_port_block
from .process import LocalServer, ServerStartError, stop_all
from .rclone import start_rclone
from .rgw import CEPH_INSTALL_HINT, missing_ceph_programs, start_rgw
from .seaweedfs import start_seaweedfs

__all__ = [
    "CEPH_INSTALL_HINT",
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "SEAWEEDFS_GRPC_OFFSET",
    "Endpoint",
    "LocalServer",
    "ServerStartError",
    "free_port_block",
    "missing_ceph_programs",
    "reset_moto",
    "start_moto",
    "start_rclone",
    "start_rgw",
    "start_seaweedfs",
    "stop_all",
]
