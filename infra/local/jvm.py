"""The Java 17 and the jars the local servers run on.

Kafka, Cassandra 5.0 and Hadoop each support Java 17 but not every later release, so the
launcher looks for exactly that version rather than whatever ``java`` is first on PATH. Jars come
from Maven Central through the POMs in ``infra/local/maven/``, cached outside the repository, and
run only if each matches the SHA-256 pinned beside its POM: Maven's own checksums come from the
same server as the jars, so they catch a broken download, not a replaced artifact.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from infra.local.server_types import MAVEN, InfraError

PINNED = "jars.sha256"
VERIFIED = ".verified"


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def find_java() -> str:
    """A Java 17 binary: ``PRICEPIPE_JAVA_HOME``, ``JAVA_HOME``, the system JDK 17, or ``java`` on PATH."""
    candidates: list[str] = []
    for variable in ("PRICEPIPE_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(variable)
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*17*/bin/java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    seen = []
    for java in candidates:
        if java in seen or not Path(java).exists():
            continue
        seen.append(java)
        if _java_major(java) == 17:
            return java
    found = ", ".join(f"{j} (Java {_java_major(j)})" for j in seen) or "no java at all"
    raise InfraError(
        "Java 17 is required to run Kafka, Cassandra 5.0 and HDFS locally, but found "
        f"{found}. Install it (Debian: apt-get install openjdk-17-jdk-headless) or set PRICEPIPE_JAVA_HOME."
    )


def classpath_dir(cache_dir: Path, module: str) -> Path:
    """The folder of a module's jars, resolved once per POM content (a POM change resolves again)
    and checked against the module's pinned checksums before anything runs from it."""
    pom = MAVEN / module / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    target = cache_dir / "lib" / f"{module}-{digest}"
    if not (target / ".complete").exists():
        _resolve(pom, module, target, digest)
    verify_jars(target, MAVEN / module / PINNED)
    return target


def _resolve(pom: Path, module: str, target: Path, digest: str) -> None:
    """Copy the POM's runtime jars from Maven Central into ``target``, failing on a checksum Maven
    cannot match (it only warns by default)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is needed to fetch the servers' jars: apt-get install maven")
    print(f"[infra] resolving {module} jars from Maven Central into {target} ...", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "--strict-checksums", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise InfraError(f"Maven could not resolve the {module} jars (exit {result.returncode}):\n{tail}")
    (target / ".complete").write_text(digest)


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    """What goes on the classpath: every file but the markers (dot files)."""
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def _fingerprint(folder: Path, pinned: Path) -> str:
    """Cheap to compute on every start: the pinned list's content, and each file's name, size and
    modification time, so that a jar replaced after its check is hashed again."""
    parts = [_sha256(pinned)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in _files(folder)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_pinned(pinned: Path) -> dict[str, str]:
    """``{jar name: sha256}`` from a ``sha256sum``-style list (``<hex>  <name>`` per line)."""
    entries = {}
    for line in pinned.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            checksum, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = checksum.lower()
    return entries


def verify_jars(folder: Path, pinned: Path) -> None:
    """Refuse to run from ``folder`` unless its files are exactly the pinned ones, byte for byte.

    Hashing reads every jar (50-120 of them, 40-70 MiB per server), so it is done once: a marker
    keeps the fingerprint of what was verified, and a start on unchanged files skips the hashing."""
    marker = folder / VERIFIED
    fingerprint = _fingerprint(folder, pinned) if pinned.exists() else ""
    if fingerprint and marker.exists() and marker.read_text() == fingerprint:
        return
    if not pinned.exists():
        raise InfraError(f"no pinned checksums at {pinned}: create them from jars you trust with "
                         f"`python -m infra.local.jvm pin {pinned.parent.name} {folder}`")
    expected = read_pinned(pinned)
    present = _files(folder)
    fix = (f"If {pinned.parent / 'pom.xml'} was changed on purpose, check where the new jars come from and "
           f"pin them with `python -m infra.local.jvm pin {pinned.parent.name} {folder}`; otherwise delete "
           f"{folder} so that the next start downloads them again.")
    for jar in present:
        if jar.name not in expected:
            raise InfraError(f"{jar} is not in {pinned}: refusing to run it. {fix}")
        actual = _sha256(jar)
        if actual != expected[jar.name]:
            raise InfraError(f"{jar} has SHA-256 {actual}, but {pinned} pins {expected[jar.name]}: refusing "
                             f"to run it. {fix}")
    missing = sorted(set(expected) - {jar.name for jar in present})
    if missing:
        raise InfraError(f"{folder} lacks {', '.join(missing)}, pinned in {pinned}. {fix}")
    staged = marker.with_name(f"{VERIFIED}.{os.getpid()}")
    staged.write_text(fingerprint)
    staged.replace(marker)


def pin(folder: Path, pinned: Path) -> None:
    """Write the pinned list from the files of ``folder``: only for jars whose origin was checked."""
    pinned.write_text("".join(f"{_sha256(jar)}  {jar.name}\n" for jar in _files(folder)))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "pin":
        sys.exit("usage: python -m infra.local.jvm pin <kafka|cassandra|hdfs> <folder of its jars>")
    pin(Path(sys.argv[3]), MAVEN / sys.argv[2] / PINNED)
