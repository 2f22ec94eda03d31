"""Segmentation straight from a PACS: a DICOMweb series in (WADO-RS), the DICOM SEG back (STOW-RS).

The series is fetched into a private temporary folder and read there by ``io.dicom`` exactly as a
local series folder is (every geometry check included), so the two routes give the same volume
and the same SEG. What goes back is written locally first, to a private temporary folder (the SEG
and whatever is written beside it, such as an SR), and stored only once all of it is complete:
a failed run stores nothing.

Credentials: a netrc file (``$NETRC``, else ``~/.netrc``) entry for the server's host, or
``--dicomweb-user`` with the password in ``$PANTHER_DICOMWEB_PASSWORD``. There is no password
option (a command line shows in ``ps`` and shell histories) and no prompt (batch and cohort runs
have no terminal); URLs with ``user:password@`` are refused, since a URL appears in logs and the
cohort's manifest. The password is never logged or put in an error message.

``dicomweb-client`` (by highdicom's authors) and ``requests`` are imported only when a URL is
used: the image-only install needs neither.
"""
from __future__ import annotations

import netrc
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..config import DICOMWEB_PASSWORD_ENV, DICOMWEB_TIMEOUT_S
from ..errors import InputError
from .files import TEMPORARY_PREFIX

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

    from ..system.memory import MemoryBudget
    from .dicom import DicomSeries
    from .outputs import DicomSegPaths

URL_SCHEMES = ("http", "https")
DICOMWEB_EXTRA = "pip install 'panther-seg[dicom]'"
_RESOURCE = re.compile(r"^(?P<base>.*?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?/?$")
# DICOM JSON tags (PS3.18 F.2) of the QIDO-RS answers read here
SERIES_UID_TAG, MODALITY_TAG, DESCRIPTION_TAG, INSTANCES_TAG = "0020000E", "00080060", "0008103E", "00201209"
FAILED_SOP_SEQUENCE = "FailedSOPSequence"
T = TypeVar("T")


def is_url(value: object) -> bool:
    """An http(s) URL, which names a DICOMweb resource rather than a file."""
    return isinstance(value, str) and urlsplit(value).scheme.lower() in URL_SCHEMES and "://" in value


def location(value: str) -> Path | str:
    """A command-line input or output: a DICOMweb URL as given (a ``Path`` would fold its
    ``//``), anything else a path."""
    return value if is_url(value) else Path(value)


def _check_url(url: str) -> str:
    """``url`` without a trailing slash; refused when it carries credentials (named without them)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        shown = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
        raise InputError(shown, "credentials in a URL end up in logs: use a netrc file or --dicomweb-user "
                                f"with ${DICOMWEB_PASSWORD_ENV}")
    if not parts.hostname:
        raise InputError(url, "a DICOMweb URL needs a host")
    return url.rstrip("/")


@dataclass(frozen=True)
class DicomWebCase:
    """One MR series on a DICOMweb server: a case named after its SeriesInstanceUID (stable and
    unique, where a folder's name names a local series). Holds no password: the credentials are
    looked up where the series is fetched (a cohort worker included)."""

    url: str
    base: str
    study_uid: str
    series_uid: str
    user: str | None = None

    @property
    def name(self) -> str:
        return self.series_uid

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class StoredSeg:
    """A DICOM SEG to store on a DICOMweb server (``-o URL``): written to a private temporary
    folder first, then stored with STOW-RS together with every file written beside it."""

    base: str
    name: str
    pancreas_segment: bool = False
    user: str | None = None

    @property
    def tumour(self) -> Path:
        """The SEG's file name, which names the case (two cases must not share it)."""
        from .outputs import DICOM_SEG_SUFFIX

        return Path(self.name + DICOM_SEG_SUFFIX)

    def chosen(self) -> dict[str, Path]:
        """No local output: nothing to check or verify on this machine."""
        return {}

    def store(self, write: Callable[[DicomSegPaths], None]) -> str:
        """``write`` the SEG (and anything beside it) into a private temporary folder, then store
        it all; what was stored, for the log."""
        from .outputs import DicomSegPaths

        with tempfile.TemporaryDirectory(prefix="panther-stow-") as folder:
            write(DicomSegPaths(Path(folder) / self.tumour.name, self.pancreas_segment))
            files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(TEMPORARY_PREFIX))
            store_files(self.base, files, self.user)
        return f"{', '.join(p.name for p in files)} stored on {self.base}"


def credentials(base: str, user: str | None, where: str | None = None) -> tuple[str, str] | None:
    """``user`` with the password from ``$PANTHER_DICOMWEB_PASSWORD``; else the netrc file's entry
    for the host (or its ``default``); else none. ``where`` (default ``base``) names the refusal."""
    if user is not None:
        password = os.environ.get(DICOMWEB_PASSWORD_ENV)
        if not password:
            raise InputError(where or base, f"--dicomweb-user needs the password in ${DICOMWEB_PASSWORD_ENV} "
                                   "(never on the command line)")
        return user, password
    path = Path(os.environ["NETRC"]) if os.environ.get("NETRC") else Path.home() / ".netrc"
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(urlsplit(base).hostname or "")
    except netrc.NetrcParseError as e:  # its message may quote a token: give the line only
        raise InputError(path, f"cannot parse the netrc file (line {e.lineno})") from None
    except OSError as e:
        raise InputError(path, f"cannot read the netrc file: {e.strerror or e}") from None
    if entry is None:
        return None
    login, _, password = entry
    return login or "", password or ""


def _client(base: str, user: str | None, where: str | None = None) -> DICOMwebClient:
    try:
        import requests
        from dicomweb_client import DICOMwebClient
    except ImportError:
        raise InputError(base, f"DICOMweb needs dicomweb-client ({DICOMWEB_EXTRA})") from None
    session = requests.Session()
    session.trust_env = False  # the credentials are the ones chosen here, never requests' own netrc lookup
    session.auth = credentials(base, user, where)
    client = DICOMwebClient(base, session=session, timeout=DICOMWEB_TIMEOUT_S)
    client.set_http_retry_params(retry=False)  # a refusal is reported at once, not after minutes of back-off
    return client


def _http(where: str, base: str, what: str, call: Callable[[], T]) -> T:
    """``call``, with every HTTP failure turned into one ``InputError`` line naming ``where``."""
    import requests

    try:
        return call()
    except requests.exceptions.HTTPError as e:
        status = e.response.status_code if e.response is not None else 0
        if status == 401:
            problem = ("the server refused the credentials (HTTP 401): give them in a netrc file or with "
                       f"--dicomweb-user and ${DICOMWEB_PASSWORD_ENV}")
        elif status == 403:
            problem = f"the server refused access while {what} (HTTP 403)"
        elif status == 404:
            problem = f"not found on the server while {what} (HTTP 404)"
        else:
            reason = e.response.reason if e.response is not None else ""
            problem = f"the server answered HTTP {status} {reason} while {what}".rstrip()
        raise InputError(where, problem) from None
    except requests.exceptions.Timeout:
        raise InputError(where, f"the DICOMweb server {base} did not answer within {DICOMWEB_TIMEOUT_S:g} s while {what}") from None
    except requests.exceptions.ConnectionError:
        raise InputError(where, f"cannot reach the DICOMweb server {base} (connection failed) while {what}") from None
    except requests.exceptions.RequestException as e:
        raise InputError(where, f"DICOMweb request failed while {what}: {type(e).__name__}") from None


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _describe(item: dict[str, Any]) -> str:
    count = _value(item, INSTANCES_TAG)
    return (f"{_value(item, SERIES_UID_TAG)} ({_value(item, MODALITY_TAG) or '?'}, '{_value(item, DESCRIPTION_TAG)}'"
            + (f", {count} instances)" if count else ")"))


def resolve_case(url: str, series_uid: str | None = None, user: str | None = None) -> DicomWebCase:
    """The MR series a series or study URL names, checked on the server (reachable, credentials
    accepted, the series there and MR) before anything is fetched. A study URL gives its one MR
    series, else the one ``series_uid`` names, else a refusal listing its series."""
    from .dicom import NON_IMAGE_MODALITIES

    url = _check_url(url)
    match = _RESOURCE.match(urlsplit(url).path)
    if match is None:
        raise InputError(url, "not a DICOMweb study or series URL (.../studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>])")
    base = url[: len(url) - len(urlsplit(url).path) + match.end("base")]
    study, in_url = match["study"], match["series"]
    if in_url and series_uid and series_uid != in_url:
        raise InputError(url, f"--series-uid {series_uid} differs from the series in the URL")
    client = _client(base, user, url)
    fields = ["SeriesDescription", "NumberOfSeriesRelatedInstances"]
    wanted = in_url or series_uid
    found = _http(url, base, "looking up the study's series", lambda: client.search_for_series(
        study_instance_uid=study, fields=fields, search_filters={"SeriesInstanceUID": wanted} if wanted else None))
    found = [item for item in found if _value(item, SERIES_UID_TAG)]
    images = [item for item in found if _value(item, MODALITY_TAG).upper() not in NON_IMAGE_MODALITIES]
    if wanted:
        chosen = [item for item in found if _value(item, SERIES_UID_TAG) == wanted]
        if not chosen:
            raise InputError(url, f"no series {wanted} in study {study} on the server")
    elif not found:
        raise InputError(url, f"no study {study} (or no series in it) on the server")
    else:
        chosen = [item for item in images if _value(item, MODALITY_TAG).upper() == "MR"]
        if len(chosen) != 1:
            listed = "; ".join(_describe(item) for item in images) or "none"
            problem = "no MR series" if not chosen else f"{len(chosen)} MR series"
            raise InputError(url, f"{problem} in the study (image series: {listed}); pass --series-uid to choose one")
    modality = _value(chosen[0], MODALITY_TAG) or "?"
    if modality.upper() != "MR":
        raise InputError(url, f"series {_value(chosen[0], SERIES_UID_TAG)} is {modality}, not MR")
    return DicomWebCase(url, base, study, _value(chosen[0], SERIES_UID_TAG), user)


def check_store(base: str, user: str | None = None) -> str:
    """A DICOMweb base URL to store SEGs on, checked (reachable, credentials accepted) before any
    work; refused when it names a study or series."""
    base = _check_url(base)
    if _RESOURCE.match(urlsplit(base).path):
        raise InputError(base, "-o takes the DICOMweb base URL (the part before /studies/) to store the SEG on")
    client = _client(base, user)
    _http(base, base, "checking the server", lambda: client.search_for_studies(limit=1))
    return base


def read_dicomweb_series(case: DicomWebCase, budget: MemoryBudget | None = None) -> DicomSeries:
    """The series fetched with WADO-RS into a private temporary folder (removed afterwards) and
    read there as a local series folder is; refusals name the URL."""
    from .dicom import read_dicom_series

    client = _client(case.base, case.user, case.url)
    folder = Path(tempfile.mkdtemp(prefix="panther-wado-"))
    try:
        instances: Iterator[Any] = _http(case.url, case.base, "fetching the series", lambda: client.iter_series(case.study_uid, case.series_uid))
        count = _http(case.url, case.base, "fetching the series", lambda: _save_all(instances, folder))
        if count == 0:
            raise InputError(case.url, f"the server returned no instance of series {case.series_uid}")
        try:
            return read_dicom_series(folder, case.series_uid, budget)
        except InputError as e:
            raise InputError(case.url, e.problem) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _save_all(instances: Iterator[Any], folder: Path) -> int:
    count = 0
    for count, ds in enumerate(instances, start=1):
        ds.save_as(folder / f"{count:06d}.dcm", enforce_file_format=True)
    return count


def store_files(base: str, files: list[Path], user: str | None = None) -> None:
    """The files stored with one STOW-RS request; a refusal of any instance is an error."""
    import pydicom

    client = _client(base, user)
    datasets = [pydicom.dcmread(path) for path in files]
    answer = _http(base, base, "storing the SEG", lambda: client.store_instances(datasets))
    failed = answer.get(FAILED_SOP_SEQUENCE) if answer is not None else None
    if failed:
        raise InputError(base, f"the server refused {len(failed)} of the {len(files)} instances stored")
