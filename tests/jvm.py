"""Build the classpath of a Java server the tests run (OpenSearch, Kafka) from Maven Central (stdlib only).

Each server has a pom.xml that only lists jars (fetched into lib/ by `mvn dependency:copy-dependencies`)
and one Java file of ours, compiled with plain javac and zipped into target/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def java(tool: str) -> str:
    """Path of a JDK tool, preferring $JAVA_HOME like mvn does."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / tool).exists():
        return str(Path(java_home) / "bin" / tool)
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
    return found


@dataclass(frozen=True)
class CdsDump:
    """A class-data-sharing archive the JVM writes when it exits (see JvmBuild.cds_options)."""

    tmp: Path  # the file the JVM writes
    final: Path

    def finish(self, clean_exit: bool) -> None:
        """Only a clean exit writes a complete archive; the rename makes it appear atomically."""
        if clean_exit and self.tmp.exists():
            os.replace(self.tmp, self.final)
        self.tmp.unlink(missing_ok=True)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve_until_stopped(alive: Callable[[], bool], stop: Callable[[], None]) -> None:
    """The `run` command's loop: wait until Ctrl-C, SIGTERM or the server's own exit, then stop it.
    SIGTERM becomes a normal stop too, so the server's data dir is cleaned up either way."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set() and alive():
            stopping.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def run_quietly(cmd: list[str]) -> None:
    """Run a build step quietly (Maven 3.8 prints colour codes even with -B -q); show output on failure."""
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")


@dataclass(frozen=True)
class JvmBuild:
    what: str  # for the first-build message, e.g. "OpenSearch test node"
    size_hint: str  # what the first build downloads, e.g. "~70 MB"
    pom: Path
    java_src: Path
    lib: Path
    target: Path
    jar_name: str
    marker_jar: str  # a glob in lib/ that only a complete copy matches

    @property
    def classes(self) -> Path:
        return self.target / "classes"

    @property
    def jar(self) -> Path:
        # A jar rather than the classes dir, because the JVM's class-data-sharing archive refuses
        # directories on the classpath.
        return self.target / self.jar_name

    @property
    def stamp(self) -> Path:
        return self.target / "build.stamp"

    def classpath(self) -> str:
        """Our jar then lib/ sorted: explicit, because a class-data archive is only valid for the
        exact same classpath."""
        return os.pathsep.join(map(str, [self.jar, *sorted(self.lib.glob("*.jar"))]))

    def cds_options(self, dump: bool = True) -> tuple[list[str], CdsDump | None]:
        """JVM options for the class-data-sharing archive of this classpath's classes on this JDK:
        load it when it exists (a JVM then starts about twice as fast), else (with `dump`) write it
        when the JVM exits, in which case the CdsDump must be finished once the JVM is gone.
        build() deletes it."""
        java_bin = Path(java("java")).resolve()
        key = hashlib.sha256(f"{java_bin}:{java_bin.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        archive = self.target / f"cds-{key}.jsa"
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"], None
        if not dump:
            return [], None
        pending = CdsDump(self.target / f"{archive.name}.{uuid.uuid4().hex[:8]}.tmp", archive)
        return [f"-XX:ArchiveClassesAtExit={pending.tmp}"], pending

    def _source_hash(self) -> str:
        h = hashlib.sha256()
        for path in (self.pom, self.java_src):
            h.update(path.read_bytes())
        return h.hexdigest()

    def _up_to_date(self, digest: str) -> bool:
        return (
            self.stamp.exists()
            and self.stamp.read_text().strip() == digest
            and self.jar.exists()
            and any(self.lib.glob(self.marker_jar))
        )

    def build(self) -> None:
        """Fetch the jars into lib/ and compile the Java file into target/; a no-op when up to date."""
        digest = self._source_hash()
        if self._up_to_date(digest):
            return
        self.target.mkdir(exist_ok=True)
        # A file lock, so parallel test processes do not build over each other.
        with open(self.target / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._up_to_date(digest):  # another process finished the build while we waited
                return
            self.stamp.unlink(missing_ok=True)
            # Start from an empty lib/ so jars of an older pom never linger on the classpath.
            shutil.rmtree(self.lib, ignore_errors=True)
            mvn = shutil.which("mvn")
            if not mvn:
                raise RuntimeError("mvn not found: install Maven 3.8+ (apt-get install maven)")
            print(f"building the {self.what} (first time: {self.size_hint} from Maven Central)",
                  file=sys.stderr)
            run_quietly([mvn, "-B", "-q", "-f", str(self.pom), "dependency:copy-dependencies",
                         f"-DoutputDirectory={self.lib}"])
            shutil.rmtree(self.classes, ignore_errors=True)
            for old in self.target.glob("*.jsa"):  # class-data archives of the old classpath
                old.unlink()
            run_quietly([java("javac"), "--release", "17", "-d", str(self.classes), "-cp", f"{self.lib}/*",
                         str(self.java_src)])
            with zipfile.ZipFile(self.jar, "w") as jar:  # a jar needs no manifest to sit on a classpath
                for cls in sorted(self.classes.rglob("*.class")):
                    jar.write(cls, cls.relative_to(self.classes).as_posix())
            self.stamp.write_text(digest + "\n")
