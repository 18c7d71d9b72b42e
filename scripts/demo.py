"""Demo of the main job: two local S3 endpoints, sample objects, `longbow sync`, verification.

Run with `make demo`. Everything happens on 127.0.0.1 in a temporary folder that is removed at
the end; nothing else on the machine is touched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from longbow_testkit.servers import start_seaweedfs

MiB = 1024 * 1024
SAMPLES = {
    "empty.txt": 0,
    "notes/readme.txt": 3 * 1024,
    "notes/settings.json": 700,
    "photos/2024/img 001.jpg": 2 * MiB + 123,
    "photos/2024/img+002.jpg": 5 * MiB,
    "video/clip.mp4": 48 * MiB + 7,
    "backups/db-dump.sql.gz": 21 * MiB,
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="longbow-demo-") as tmp:
        work = Path(tmp)
        print("Starting two SeaweedFS S3 endpoints on 127.0.0.1 ...", flush=True)
        with start_seaweedfs(work / "source") as src, start_seaweedfs(work / "dest") as dst:
            print(f"  source      {src.endpoint.url}")
            print(f"  destination {dst.endpoint.url}")
            s3_src, s3_dst = src.endpoint.client(), dst.endpoint.client()
            s3_src.create_bucket(Bucket="photos-archive")
            s3_dst.create_bucket(Bucket="archive-copy")
            print(f"Seeding {len(SAMPLES)} objects ({sum(SAMPLES.values()) / MiB:.1f} MiB) ...")
            digests = {}
            for key, size in SAMPLES.items():
                body = os.urandom(size)
                digests[key] = hashlib.md5(body).hexdigest()
                s3_src.put_object(Bucket="photos-archive", Key=key, Body=body)

            env = {
                **os.environ,
                "LONGBOW_SRC_ACCESS_KEY_ID": src.endpoint.access_key,
                "LONGBOW_SRC_SECRET_ACCESS_KEY": src.endpoint.secret_key,
                "LONGBOW_DST_ACCESS_KEY_ID": dst.endpoint.access_key,
                "LONGBOW_DST_SECRET_ACCESS_KEY": dst.endpoint.secret_key,
            }
            command = [
                sys.executable,
                "-m",
                "s3longbow",
                "sync",
                "s3://photos-archive/",
                "s3://archive-copy/from-source/",
                "--src-endpoint-url",
                src.endpoint.url,
                "--src-path-style",
                "--dst-endpoint-url",
                dst.endpoint.url,
                "--dst-path-style",
                "--db",
                str(work / "jobs.db"),
            ]
            print("\n$ longbow sync s3://photos-archive/ s3://archive-copy/from-source/ ...\n")
            first = subprocess.run(command, env=env)
            print("\nRunning the same command again: nothing is left to copy.\n")
            second = subprocess.run(command, env=env)

            print("\nVerifying every object by reading it back from the destination ...")
            bad = 0
            for key, digest in digests.items():
                copied = s3_dst.get_object(Bucket="archive-copy", Key=f"from-source/{key}")
                got = hashlib.md5(copied["Body"].read()).hexdigest()
                ok = got == digest
                bad += not ok
                print(f"  {'OK ' if ok else 'BAD'} {key} ({SAMPLES[key]} bytes, md5 {got})")
            if first.returncode or second.returncode or bad:
                print("\nDemo FAILED", file=sys.stderr)
                return 1
            print(f"\nAll {len(digests)} objects verified byte for byte. Demo passed.")
            return 0


if __name__ == "__main__":
    sys.exit(main())
