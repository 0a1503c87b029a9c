"""Builds a Patchday catalog with python-tuf's Metadata API (not Patchday's code).

usage: make_repo.py REPO_DIR DEB_FILE UPDATE_ID PACKAGE VERSION ARCH
Writes REPO_DIR/metadata (1.root.json, root.json, 1.targets.json, 1.snapshot.json,
timestamp.json) and REPO_DIR/targets/<sha256>.<name> for a payload and its update
document, with the signed custom fields Patchday expects.
"""
import datetime
import hashlib
import json
import os
import sys

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def main():
    repo, deb, update_id, package, version, arch = sys.argv[1:7]
    meta_dir = os.path.join(repo, "metadata")
    tgt_dir = os.path.join(repo, "targets")
    os.makedirs(meta_dir)
    os.makedirs(tgt_dir)
    expires = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=7)

    signers = {r: CryptoSigner.generate_ed25519() for r in ("root", "targets", "snapshot", "timestamp")}
    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role, s in signers.items():
        root.signed.add_key(s.public_key, role)

    file_version = version.split(":", 1)[-1]
    payload_name = "%s_%s_%s.deb" % (package, file_version, arch)
    doc_name = "update-%s.json" % update_id
    doc = {
        "id": update_id,
        "title": "%s %s (published with python-tuf)" % (package, version),
        "product": "debian",
        "classification": "security",
        "severity": "important",
        "cves": [],
        "supersedes": [],
        "release": {"lane": "emergency", "reason": "interop test"},
        "payloads": [{
            "target": payload_name, "kind": "deb", "package": package, "version": version,
            "architecture": arch, "source": package, "source_version": version,
        }],
        "description": "",
    }
    doc_bytes = json.dumps(doc).encode()
    with open(deb, "rb") as f:
        deb_bytes = f.read()

    targets = Metadata(Targets(expires=expires))
    for name, data, custom in (
        (payload_name, deb_bytes, {"type": "payload", "kind": "deb", "package": package, "version": version,
                                   "architecture": arch, "source": package, "source_version": version}),
        (doc_name, doc_bytes, {"type": "update", "id": update_id}),
    ):
        tf = TargetFile.from_data(name, data, ["sha256"])
        tf.unrecognized_fields["custom"] = custom
        targets.signed.targets[name] = tf
        sha = hashlib.sha256(data).hexdigest()
        with open(os.path.join(tgt_dir, "%s.%s" % (sha, name)), "wb") as f:
            f.write(data)

    ser = JSONSerializer(compact=False)
    targets.sign(signers["targets"])
    targets_bytes = targets.to_bytes(ser)
    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta["targets.json"] = MetaFile(
        version=1, length=len(targets_bytes), hashes={"sha256": hashlib.sha256(targets_bytes).hexdigest()})
    snapshot.sign(signers["snapshot"])
    snapshot_bytes = snapshot.to_bytes(ser)
    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(
        version=1, length=len(snapshot_bytes), hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()})
    timestamp.sign(signers["timestamp"])
    root.sign(signers["root"])
    root_bytes = root.to_bytes(ser)

    for name, data in (
        ("1.root.json", root_bytes), ("root.json", root_bytes), ("1.targets.json", targets_bytes),
        ("1.snapshot.json", snapshot_bytes), ("timestamp.json", timestamp.to_bytes(ser)),
    ):
        with open(os.path.join(meta_dir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
