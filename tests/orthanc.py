"""A real Orthanc with its DICOMweb plugin for the tests: Debian's ``orthanc`` and
``orthanc-dicomweb`` packages, started on a free loopback port with a temporary storage folder,
authentication on (one test user), the DICOM port off; stopped when the fixture ends."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ORTHANC = Path(os.environ.get("PANTHER_TEST_ORTHANC", "/usr/sbin/Orthanc"))
PLUGIN_FOLDERS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
USER, PASSWORD = "panther", "s3cret-Test-pw"
START_TIMEOUT_S = 30.0


def dicomweb_plugin() -> Path | None:
    """Debian's libOrthancDicomWeb.so (``dpkg -L orthanc-dicomweb``)."""
    for folder in PLUGIN_FOLDERS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def unavailable() -> str | None:
    """Why the server cannot be started here, or None."""
    if not (ORTHANC.is_file() and os.access(ORTHANC, os.X_OK)):
        return f"Orthanc is not installed ({ORTHANC}; Debian package orthanc)"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running server: its REST root, its DICOMweb root, and REST helpers for the checks."""

    url: str
    process: subprocess.Popen
    log: Path

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.read()

    def json(self, path: str) -> object:
        return json.loads(self.request(path))

    def upload(self, files: list[Path]) -> None:
        """Through Orthanc's REST ``/instances``, independent of the code under test."""
        for path in files:
            self.request("/instances", path.read_bytes(), "POST")

    def instance_count(self) -> int:
        return int(self.json("/statistics")["CountInstances"])

    def clear(self) -> None:
        for patient in self.json("/patients"):
            self.request(f"/patients/{patient}", method="DELETE")


def start(folder: Path) -> Orthanc:
    port = free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "panther-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": port, "DicomServerEnabled": False, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(dicomweb_plugin())], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False, "ConcurrentJobs": 1, "HttpTimeout": 60,
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=1))
    log = folder / "orthanc.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(ORTHANC), str(config_path)], stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            server.json("/system")
            return server
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                stop(server)
                raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S:g} s: {log.read_text()[-2000:]}")
            time.sleep(0.2)


def stop(server: Orthanc) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def running(folder: Path) -> Iterator[Orthanc]:
    """A started server for a fixture to yield; stopped (and its storage removed) afterwards."""
    server = start(folder)
    try:
        yield server
    finally:
        stop(server)
        shutil.rmtree(folder / "storage", ignore_errors=True)
