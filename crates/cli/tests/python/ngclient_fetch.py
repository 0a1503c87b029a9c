"""An independent TUF client (python-tuf's ngclient) against a Patchday server.

usage: ngclient_fetch.py SERVER TOKEN ROOT_JSON WORKDIR TARGET_NAME
Prints the downloaded file's path.
"""
import os
import sys
import urllib.error
import urllib.request

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater


class BearerFetcher(FetcherInterface):
    """Adds the Patchday credential; everything else is ngclient's own logic."""

    def __init__(self, token):
        self.token = token

    def _fetch(self, url):
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + self.token})
        try:
            resp = urllib.request.urlopen(req, timeout=30)
        except urllib.error.HTTPError as e:
            raise DownloadHTTPError(str(e), e.code) from e
        while True:
            chunk = resp.read(65536)
            if not chunk:
                return
            yield chunk


def main():
    server, token, root, work, name = sys.argv[1:6]
    meta = os.path.join(work, "metadata")
    targets = os.path.join(work, "targets")
    os.makedirs(meta, exist_ok=True)
    os.makedirs(targets, exist_ok=True)
    with open(root, "rb") as f:
        root_bytes = f.read()
    updater = Updater(
        metadata_dir=meta,
        metadata_base_url=server + "/v1/tuf/metadata/",
        target_dir=targets,
        target_base_url=server + "/v1/tuf/targets/",
        fetcher=BearerFetcher(token),
        bootstrap=root_bytes,
    )
    updater.refresh()
    info = updater.get_targetinfo(name)
    if info is None:
        sys.exit("target %s not found" % name)
    print(updater.download_target(info))


if __name__ == "__main__":
    main()
