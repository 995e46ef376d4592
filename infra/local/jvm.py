"""The Java 17 and the jars the local servers run on.

Kafka, Cassandra 5.0 and Hadoop each support Java 17 but not every later release, so the
launcher looks for exactly that version rather than whatever ``java`` is first on PATH. Jars come
from Maven Central through the POMs in ``infra/local/maven/``, cached outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from infra.local.servers import MAVEN, InfraError


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
    """The folder of a module's jars, resolved once per POM content (a POM change resolves again)."""
    pom = MAVEN / module / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    target = cache_dir / "lib" / f"{module}-{digest}"
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is needed to fetch the servers' jars: apt-get install maven")
    print(f"[infra] resolving {module} jars from Maven Central into {target} ...", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise InfraError(f"Maven could not resolve the {module} jars (exit {result.returncode}):\n{tail}")
    (target / ".complete").write_text(digest)
    return target
