"""Python 3.10 packages for Azure Automation: where the wheels come from and how Automation gets them.

Automation imports a package from a content link, a URL it downloads itself; it accepts only wheels
(cp310 / abi3 / pure, manylinux x86_64 or ``any``) and does not pull in dependencies, so every package
of the dependency closure must be imported (docs/platform.md, "Azure Automation: Python runtime"). The design:

* Third-party packages: ``pip install --dry-run --report`` resolves ``requirements-runtime.txt`` (what
  the runbooks import; publish.py's own dependencies stay local) *for the sandbox* (``--platform
  manylinux2014_x86_64 --python-version 3.10 --abi cp310 --only-binary=:all:``) without installing
  anything; pip's installation report names the exact PyPI file of every package of the closure and its
  SHA-256. Those ``files.pythonhosted.org`` URLs are public, so Automation downloads them directly:
  nothing to upload, nothing to host. pip runs isolated from the admin's pip configuration
  (``--isolated``, ``PIP_CONFIG_FILE=/dev/null``, no ``PIP_*`` variables) against public PyPI: a company
  index or a local mirror would give content links Azure cannot download, and any such link is refused
  at plan time (:func:`check_public`).
* Our own ``shared`` package: built here into a wheel by :func:`build_shared_wheel`, a small
  deterministic PEP 427 writer (no network, no build backend: ``pip wheel`` would fetch setuptools
  into an isolated build env). Its version gets a local label with a hash of the sources
  (``0.1.0+g1a2b3c4d5e6f``), so every code change is a new, distinguishable wheel. It is uploaded to a
  blob container the admin names with a container SAS URL (``--wheel-container-sas`` or the
  ``CI_GOVERNANCE_WHEEL_CONTAINER_SAS`` environment variable), and the blob URL with that SAS is the
  content link. The SAS only has to live as long as the publish run: Automation downloads at import.

:data:`README_PARAGRAPH` is the same explanation for operators (docs/admin.md, "2. `publish.py`").
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from deployment.model import PackageSpec, PublishError

README_PARAGRAPH = """\
**How packages reach Azure Automation.** Runbooks run in Automation's Python 3.10 sandbox, which has no
packages of its own and installs only wheels (cp310/abi3/pure, manylinux x86_64) that you import, without
their dependencies. `publish.py` therefore resolves the full dependency closure of `requirements-runtime.txt`
(what the runbooks import; `publish.py`'s own dependencies in `requirements.txt`, such as
azure-mgmt-automation, stay on your machine) for that platform with `pip install --dry-run --report`
(nothing is installed locally) and gives Automation the public PyPI download URL of each wheel, with its
SHA-256; Automation downloads them itself. pip runs **isolated from your pip configuration** (no
`pip.conf`, no `PIP_*` variables) against public PyPI, because a company index or a local mirror gives
links Azure cannot download; any link outside `https://files.pythonhosted.org/` is refused at plan time
with the package's name. Our own `shared` package is built locally into a wheel whose version carries a
hash of the source (`0.1.0+g<hash>`), uploaded to a blob container you name with a container SAS URL
(`--wheel-container-sas`, or the `CI_GOVERNANCE_WHEEL_CONTAINER_SAS` environment variable; the SAS needs
create, write and read permission and only has to be valid during the publish run). All packages go into
a runtime environment whose name ends with a hash of its contents (`ci-governance-py310-<hash>`): a change
builds a new environment next to the old one, runbooks switch to it only after every import succeeded and
every self-check passed, and the old one is then deleted. A run where nothing changed needs no SAS and
writes nothing."""

PUBLIC_INDEX = "https://pypi.org/simple"
# Where PyPI serves package files; Automation downloads content links itself, from the public internet.
PUBLIC_FILES = "https://files.pythonhosted.org/"

# Tags the 3.10 sandbox accepts (MicrosoftDocs/azure-docs articles/automation/python-3-packages.md).
DEFAULT_PLATFORMS: Tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")
_ACCEPTED_ABIS = {"none", "abi3", "cp310"}
_PLATFORM_OK = re.compile(r"^(any|manylinux1_x86_64|manylinux2010_x86_64|manylinux2014_x86_64|manylinux_2_\d+_x86_64)$")


@dataclass(frozen=True)
class LocalWheel:
    """A wheel built in memory."""

    name: str
    version: str
    filename: str
    data: bytes
    sha256: str

    def as_package(self) -> PackageSpec:
        """The package spec for this wheel; its URL is known only after upload."""
        return PackageSpec(
            name=self.name, version=self.version, filename=self.filename, sha256=self.sha256, url=None, local_data=self.data, size=len(self.data)
        )


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (``Azure_Core`` -> ``azure-core``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def incompatible_reason(filename: str) -> Optional[str]:
    """Why the 3.10 sandbox cannot use this file, or None if its wheel tags fit."""
    if not filename.endswith(".whl"):
        return "not a wheel (Automation's Python 3.10 runtime accepts wheels only)"
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        return "not a valid wheel file name"
    pythons, abis, platforms = (set(p.split(".")) for p in parts[-3:])
    if not any(_PLATFORM_OK.match(p) for p in platforms):
        return f"platform {'.'.join(sorted(platforms))} is not manylinux x86_64 or any"
    for abi in abis & _ACCEPTED_ABIS:
        if abi == "none" and pythons & {"py3", "py310", "cp310"}:
            return None
        if abi == "cp310" and "cp310" in pythons:
            return None
        if abi == "abi3" and any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= 10 for p in pythons):
            return None
    return f"built for {'.'.join(sorted(pythons))}-{'.'.join(sorted(abis))}, not CPython 3.10"


# -- our own wheel ----------------------------------------------------------------------------------
def read_project_metadata(pyproject: Path) -> Tuple[str, str, str]:
    """(name, version, requires-python) from the [project] table of pyproject.toml.

    A line-based reader: Python 3.10 has no tomllib and this needs three plain string keys only.
    """
    values: Dict[str, str] = {}
    section = None
    for raw in pyproject.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
            continue
        m = re.match(r'^(name|version|requires-python)\s*=\s*"([^"]*)"', line)
        if section == "[project]" and m:
            values[m.group(1)] = m.group(2)
    if "name" not in values or "version" not in values:
        raise PublishError(f"{pyproject} has no [project] name and version.")
    return values["name"], values["version"], values.get("requires-python", "")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def build_shared_wheel(project_dir: Path, package: str = "shared") -> LocalWheel:
    """Build ``project_dir/<package>`` into a pure-Python wheel, byte-for-byte reproducible.

    Same sources give the same bytes (fixed timestamps, sorted entries), and the version's local label
    is a hash of the sources, so a changed package is always a different wheel.
    """
    name, base_version, requires_python = read_project_metadata(project_dir / "pyproject.toml")
    root = project_dir / package
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
    if not (root / "__init__.py").is_file():
        raise PublishError(f"{root} is not a Python package (no __init__.py).")
    contents = [(p.relative_to(project_dir).as_posix(), p.read_bytes()) for p in files]
    # The card templates live beside the package in the repository; in Automation the runbooks find
    # them inside the package (shared/teams/cards.py looks in <package>/adaptive_cards/ first).
    cards = project_dir / "adaptive_cards"
    if cards.is_dir():
        contents += [(f"{package}/adaptive_cards/{p.name}", p.read_bytes()) for p in sorted(cards.glob("*.j2"))]
    source_hash = hashlib.sha256(b"".join(f"{path}\0".encode() + hashlib.sha256(data).digest() for path, data in contents)).hexdigest()[:12]
    version = f"{base_version}+g{source_hash}"
    dist = re.sub(r"[-_.]+", "_", name)
    dist_info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + (f"Requires-Python: {requires_python}\n" if requires_python else "")
    wheel_meta = "Wheel-Version: 1.0\nGenerator: ci-governance publish.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    contents += [(f"{dist_info}/METADATA", metadata.encode()), (f"{dist_info}/WHEEL", wheel_meta.encode())]
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in contents) + f"{dist_info}/RECORD,,\n"
    contents.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in contents:
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buffer.getvalue()
    return LocalWheel(normalize_name(name), version, f"{dist}-{version}-py3-none-any.whl", data, hashlib.sha256(data).hexdigest())


# -- third-party wheels -------------------------------------------------------------------------------
def check_public(specs: Sequence[PackageSpec], public_prefix: str = PUBLIC_FILES) -> None:
    """Refuse any content link Azure Automation could not download from the public internet."""
    private = [f"{s.name} {s.version}: {redact(s.url or '')}" for s in specs if s.url is not None and not s.url.startswith(public_prefix)]
    if private:
        raise PublishError(
            f"Azure Automation downloads each package itself from the public internet, and these links are not on {public_prefix}:\n  "
            + "\n  ".join(private)
            + "\n  They come from a pip configuration or index only this machine can reach (file://, a company mirror)."
            " publish.py resolves against public PyPI with pip's configuration ignored; if you see this, check the requirement files"
            " for --index-url/--find-links lines. Nothing was changed."
        )


def parse_pip_report(report: dict) -> List[PackageSpec]:
    """Package specs from pip's installation report (``pip install --dry-run --report``, report version 1)."""
    specs: List[PackageSpec] = []
    problems: List[str] = []
    for item in report.get("install", []):
        meta = item.get("metadata") or {}
        info = item.get("download_info") or {}
        url = info.get("url") or ""
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        name = normalize_name(meta.get("name", ""))
        reason = incompatible_reason(filename)
        if reason:
            problems.append(f"{name} {meta.get('version')}: {filename}: {reason}")
            continue
        if "sha256" not in hashes:
            problems.append(f"{name}: pip reported no sha256 for {filename}")
            continue
        specs.append(PackageSpec(name=name, version=meta.get("version", ""), filename=filename, sha256=hashes["sha256"], url=url))
    if problems:
        raise PublishError("Some dependencies have no wheel usable by Automation's Python 3.10 sandbox:\n  " + "\n  ".join(problems))
    return sorted(specs, key=lambda s: s.name)


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class PipReportResolver:
    """Resolves a requirements file for the sandbox platform with pip (reads PyPI, installs nothing)."""

    def __init__(
        self,
        python: str = sys.executable,
        platforms: Sequence[str] = DEFAULT_PLATFORMS,
        extra_args: Sequence[str] = (),
        runner: Runner = subprocess.run,
        index_url: str = PUBLIC_INDEX,
        public_prefix: str = PUBLIC_FILES,
        size_lookup: Optional[Callable[[List[PackageSpec]], List[PackageSpec]]] = None,
    ):
        self.python = python
        self.platforms = tuple(platforms)
        self.extra_args = tuple(extra_args)
        self.runner = runner
        self.index_url = index_url
        self.public_prefix = public_prefix
        self.size_lookup = size_lookup if size_lookup is not None else (lambda specs: pypi_sizes(specs, index_url=index_url))

    @staticmethod
    def environment(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """The environment pip runs in: no ``PIP_*`` variable, and no configuration file at all
        (pip skips every config file when PIP_CONFIG_FILE is os.devnull; ``--isolated`` alone still reads
        the global ones such as /etc/pip.conf and /etc/xdg/pip/pip.conf)."""
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if not k.upper().startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        return env

    def command(self, requirements: Path, target: str) -> List[str]:
        """The pip command line (``--target`` keeps pip from looking at the local environment)."""
        cmd = [self.python, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet", "--report", "-", "--ignore-installed", "--only-binary=:all:"]
        cmd += ["--index-url", self.index_url]
        for platform in self.platforms:
            cmd += ["--platform", platform]
        cmd += ["--python-version", "3.10", "--implementation", "cp", "--abi", "cp310", "--target", target, *self.extra_args, "-r", str(requirements)]
        return cmd

    def __call__(self, requirements: Path) -> List[PackageSpec]:
        """Resolve ``requirements`` into the wheels Automation must import."""
        with tempfile.TemporaryDirectory() as target:
            done = self.runner(self.command(requirements, target), capture_output=True, text=True, env=self.environment())
        if done.returncode != 0:
            raise PublishError(f"pip could not resolve {requirements} for Python 3.10 manylinux x86_64 against {self.index_url}:\n{done.stderr.strip()}")
        try:
            report = json.loads(done.stdout)
        except ValueError as exc:
            raise PublishError(f"pip printed no installation report ({exc}).") from exc
        specs = parse_pip_report(report)
        check_public(specs, self.public_prefix)
        return self.size_lookup(specs)


def pypi_sizes(specs: List[PackageSpec], session: Optional[requests.Session] = None, index_url: str = PUBLIC_INDEX) -> List[PackageSpec]:
    """The specs with ``size`` from the index's JSON simple API (PEP 691 ``files[]``, ``size`` per PEP 700:
    ``GET <index>/<name>/`` with ``Accept: application/vnd.pypi.simple.v1+json``), looked up concurrently;
    a failed lookup leaves the size unknown (the plan says so)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    http = session or requests.Session()

    def one(spec: PackageSpec) -> PackageSpec:
        if spec.url is None:
            return spec
        try:
            response = http.get(f"{index_url.rstrip('/')}/{spec.name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10)
            files = response.json().get("files", []) if response.status_code == 200 else []
        except (requests.RequestException, ValueError, AttributeError):
            return spec
        size = next((f.get("size") for f in files if isinstance(f, dict) and f.get("filename") == spec.filename), None)
        return replace(spec, size=size) if isinstance(size, int) else spec

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, specs))


# -- upload of our wheel --------------------------------------------------------------------------------
def redact(url: str) -> str:
    """The URL without query string: a SAS token must never reach the output."""
    return url.split("?", 1)[0]


class SasContainerUploader:
    """Uploads blobs into a container through a container SAS URL (Blob REST "Put Blob")."""

    def __init__(self, container_sas_url: str, session: Optional[requests.Session] = None):
        parts = urlsplit(container_sas_url)
        if parts.scheme != "https" or not parts.query or "sig=" not in parts.query:
            raise PublishError("--wheel-container-sas must be an https container URL with a SAS token (…/container?sv=…&sig=…).")
        self._parts = parts
        self._session = session or requests.Session()

    def __call__(self, filename: str, data: bytes) -> str:
        """Upload ``data`` as ``filename``; returns the blob URL with the SAS (for the content link)."""
        path = self._parts.path.rstrip("/") + "/" + quote(filename)
        url = urlunsplit((self._parts.scheme, self._parts.netloc, path, self._parts.query, ""))
        response = self._session.put(
            url, data=data, headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Content-Type": "application/octet-stream"}, timeout=120
        )
        if response.status_code not in (200, 201):
            raise PublishError(
                f"Uploading {filename} to {redact(url)} failed with HTTP {response.status_code}: check the SAS permissions (create, write, read) and expiry."
            )
        return url
