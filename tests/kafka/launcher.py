"""Build and run a real single-node Apache Kafka 3.9 broker (KRaft) for the test suite (stdlib only).

The broker is ``kafka.Kafka`` from Maven Central jars (see pom.xml), run as broker and controller in
one JVM on 127.0.0.1, so no distribution download, Docker or ZooKeeper is needed. It listens on
PLAINTEXT, SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-512 and -256, users made at format time) and SSL
(a server certificate signed by a CA made here), each on its own free port.

    python -m tests.kafka.launcher build                      # fetch jars + compile (no-op when up to date)
    python -m tests.kafka.launcher run [--set KEY=VALUE ...]  # start, print the bootstrap, run until Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.jvm import CdsDump, JvmBuild, java, log_tail, serve_until_stopped

HERE = Path(__file__).resolve().parent
JVM_BUILD = JvmBuild(
    what="Kafka test broker",
    size_hint="~46 MB",
    pom=HERE / "pom.xml",
    java_src=HERE / "src/main/java/ccf/testbroker/CcfTestBroker.java",
    lib=HERE / "lib",
    target=HERE / "target",
    jar_name="ccf-test-broker.jar",
    marker_jar="kafka_2.13-*.jar",
)
MAIN_CLASS = "ccf.testbroker.CcfTestBroker"
LOG4J = HERE / "log4j.properties"

ENV_BOOTSTRAP = "CCF_TEST_KAFKA"
READY_TIMEOUT_S = 120.0
HOST = "127.0.0.1"

# SCRAM users the SASL listeners know, made by `StorageTool format --add-scram` before the first start.
USERS = {"ccf": "ccf-test-password", "ccf-other": "other-test-password"}
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# Kafka reads a PEM keystore file only with an encrypted key and this password (KIP-651), and
# only in a PBES1 scheme the JDK knows (Java 17 has no PBES2 SecretKeyFactory): PBE-SHA1-3DES.
KEY_PASSWORD = "ccf-test-key-password"

# The client-facing listeners; each one's name is also its security protocol.
LISTENERS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")

# The heap is set by start(); the serial collector keeps GC to one thread on a 2-core machine.
# Together with the class-data archive (JvmBuild.cds_options), C1 alone starts a broker with 2-2.6 s
# of CPU instead of 5.5 s (measured here); start(full_jit=True) adds C2 for long runs at load.
QUICK_JIT = ["-XX:TieredStopAtLevel=1"]
JVM_OPTS = [
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
    f"-Dlog4j.configuration=file:{LOG4J}",
    # JVM warnings go to stderr (the log) like the broker's own.
    "-Xlog:disable",
    "-Xlog:all=warning:stderr",
]


def build() -> None:
    """Fetch the jars into lib/ and compile the stdin watcher into target/; a no-op when up to date."""
    JVM_BUILD.build()


@dataclass(frozen=True)
class Ports:
    plaintext: int
    sasl_plaintext: int
    ssl: int
    sasl_ssl: int
    controller: int | None  # this node's KRaft controller listener; None on a broker-only node

    def listener(self, name: str) -> int:
        return int(getattr(self, name.lower()))


def free_ports(n: int) -> list[int]:
    """n ports free now on 127.0.0.1, below the kernel's ephemeral range: a client's outgoing
    connection can then never take one while a broker is stopped and about to come back on it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    found: list[int] = []
    for port in random.sample(range(10000, low), min(2000, low - 10000)):
        with socket.socket() as s:
            # As the broker binds: the JVM sets SO_REUSEADDR, so TIME_WAIT does not count as taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise RuntimeError(f"no {n} free ports on {HOST} below {low}")


def cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` makes it (base64url of 16 random bytes, no padding,
    never starting with '-'), without a JVM start."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class Pki:
    """A CA made for one broker and the server certificate it signed (for 127.0.0.1 and localhost)."""

    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.dir / "server.keystore.pem"


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")


def make_ca(d: Path, name: str = "ca", subject: str = "/CN=ccf kafka test CA") -> Path:
    """A self-signed CA (EC P-256, 2 days): d/<name>.pem and d/<name>.key."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", subject,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=d)
    return d / f"{name}.pem"


def make_pki(d: Path) -> Pki:
    """The broker's CA and server certificate, and the PEM keystore Kafka reads: the server key as
    encrypted PKCS#8 followed by the certificate chain."""
    make_ca(d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "server.pem", "-extfile", "server.ext", cwd=d)
    _openssl("pkcs8", "-topk8", "-in", "server.key", "-out", "server.key.enc.pem", "-v1", "PBE-SHA1-3DES",
             "-passout", f"pass:{KEY_PASSWORD}", cwd=d)
    pki = Pki(d)
    pki.keystore.write_text(
        (d / "server.key.enc.pem").read_text() + (d / "server.pem").read_text() + pki.ca_file.read_text()
    )
    return pki


def _property_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def server_properties(
    node_id: int, voters: str, data_dir: Path, ports: Ports, pki: Pki, settings: Mapping[str, object]
) -> str:
    """A node's server.properties, every listener on 127.0.0.1, `settings` last (they override the
    defaults here). The node is broker and controller when it has a controller port, else a broker
    of the quorum `voters` ("1@127.0.0.1:PORT")."""
    client = [f"{name}://{HOST}:{ports.listener(name)}" for name in LISTENERS]
    controller = [f"CONTROLLER://{HOST}:{ports.controller}"] if ports.controller else []
    props: dict[str, object] = {
        "process.roles": "broker,controller" if controller else "broker",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(client + controller),
        "advertised.listeners": ",".join(client),
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(f"{n}:{n}" for n in LISTENERS) + ",CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": 3,
        "auto.create.topics.enable": True,
        # Internal topics with one replica (a second broker may come and go), and few partitions so
        # the first consumer group or producer id does not wait for 50 partitions to be created.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 3,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 3,
        "group.initial.rebalance.delay.ms": 0,
        # A broker killed with SIGKILL comes back under a new incarnation, and the controller refuses
        # it (DUPLICATE_BROKER_REGISTRATION) until the old one's session expired: 9 s by default.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 1000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki.keystore,
        "ssl.key.password": KEY_PASSWORD,
    }
    for listener in ("sasl_plaintext", "sasl_ssl"):
        for mechanism in SCRAM_MECHANISMS:
            props[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    props.update(settings)
    return "".join(f"{k}={_property_value(v)}\n" for k, v in props.items())


def _scram_args() -> list[str]:
    return [
        arg
        for mechanism in SCRAM_MECHANISMS
        for name, password in USERS.items()
        for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
    ]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def alive_brokers(host: str, port: int, timeout: float = 5.0) -> set[int]:
    """Node ids of the unfenced brokers that a Metadata v1 request (for no topics) names: a broker
    is ready once it names itself. Stdlib only, so the launcher needs no Kafka client."""
    client_id = b"ccf-test-launcher"
    # api_key 3 (Metadata), version 1, correlation id 1, client id; body: an empty topic array.
    request = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        response = _recv_exact(sock, size)
    _correlation_id, count = struct.unpack_from(">ii", response)
    pos, ids = 8, set()
    for _ in range(count):  # node_id int32, host string, port int32, rack nullable string
        (node_id, host_len) = struct.unpack_from(">ih", response, pos)
        pos += 6 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", response, pos)
        pos += 2 + max(rack_len, 0)
        ids.add(node_id)
    return ids


class Broker:
    """One node's home (data, PKI, config) and its JVM; stop(), kill() and start() again reuse the
    same ports and log dir. close() stops it and removes a home the launcher made.

    The first node of a cluster is broker and KRaft controller; nodes started with
    `start(join=first)` are brokers of its quorum, with its cluster id, users and CA."""

    def __init__(
        self,
        home: Path,
        owns_home: bool,
        node_id: int,
        cluster: list[Broker],
        cluster_id: str,
        voters: str,
        ports: Ports,
        pki: Pki,
        settings: Mapping[str, object],
        heap: str,
        full_jit: bool,
    ) -> None:
        self.home = home
        self.node_id = node_id
        self.cluster = cluster  # every node of this cluster, shared by them, the controller first
        self.cluster_id = cluster_id
        self.voters = voters
        self.ports = ports
        self.pki = pki
        self.settings = dict(settings)
        self.heap = heap
        self.full_jit = full_jit
        self.log_path = home / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._cds_dump: CdsDump | None = None
        self._owns_home = owns_home
        cluster.append(self)

    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT listener, host:port."""
        return f"{HOST}:{self.ports.plaintext}"

    def address(self, listener: str) -> str:
        """host:port of a listener: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL."""
        return f"{HOST}:{self.ports.listener(listener)}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def start(self) -> None:
        """Start the JVM (again) on the same config and wait until the broker serves metadata."""
        if self.running():
            raise RuntimeError(f"broker already running (pid {self.pid})")
        tmp = self.home / "tmp"
        tmp.mkdir(exist_ok=True)
        cds_opts, self._cds_dump = JVM_BUILD.cds_options()
        cmd = [
            java("java"),
            f"-Xmx{self.heap}",
            f"-Djava.io.tmpdir={tmp}",
            *JVM_OPTS,
            *([] if self.full_jit else QUICK_JIT),
            *cds_opts,
            "-cp",
            JVM_BUILD.classpath(),
            MAIN_CLASS,
            str(self.home / "server.properties"),
        ]
        with open(self.log_path, "ab") as log:
            # stdin stays a pipe we hold: if this Python process dies, the broker sees EOF and exits.
            # A new session keeps a terminal's Ctrl-C away from the JVM: we stop it ourselves.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka test broker exited with {self.proc.returncode}; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            try:
                if self.node_id in alive_brokers(HOST, self.ports.plaintext):
                    return
            except (OSError, struct.error) as e:  # not listening yet, or closed while starting
                last_error = e
            time.sleep(0.1)
        raise RuntimeError(
            f"Kafka test broker not ready after {READY_TIMEOUT_S:.0f}s ({last_error!r}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Kafka's clean shutdown (flushes, closes the log cleanly); SIGKILL past timeout."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash; the next start() recovers the log."""
        self._signal(signal.SIGKILL, 30.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._cds_dump:
                timeout = max(timeout, 90.0)  # the JVM writes the class-data archive as it exits
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin:
            proc.stdin.close()
        if self._cds_dump:
            # Kafka exits with 143 after a SIGTERM, once its shutdown (and the JVM's dump) is done.
            self._cds_dump.finish(clean_exit=proc.returncode in (0, 143))
            self._cds_dump = None

    def close(self) -> None:
        """Stop and remove the home; on the controller node, the brokers that joined it first (they
        wait for a controller to stop cleanly)."""
        if self.ports.controller is not None:
            for other in reversed(self.cluster):
                if other is not self:
                    other.close()
        self.stop()
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)


def start(
    home: Path | None = None,
    settings: Mapping[str, object] | None = None,
    heap: str = "512m",
    join: Broker | None = None,
    full_jit: bool = False,
) -> Broker:
    """Format a fresh log dir and start a broker (build first if needed); returns once it serves.

    `settings` are extra server properties, e.g. {"auto.create.topics.enable": False,
    "message.max.bytes": 2048}. Without `home`, a temp dir is used and removed by close().
    `join`: a running controller node (a broker from a start() without join) whose cluster this
    broker joins, as node 2, 3, ...: replicated topics, ISR shrinks, leader elections.
    `full_jit`: C2 as well as C1, for a benchmark; slower to start.
    """
    build()
    owns_home = home is None
    home = Path(tempfile.mkdtemp(prefix="ccf-kafka-")) if home is None else Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    try:
        broker = _format(home, owns_home, settings or {}, heap, join, full_jit)
        broker.start()
    except BaseException:
        if owns_home:
            shutil.rmtree(home, ignore_errors=True)
        raise
    return broker


def _format(
    home: Path,
    owns_home: bool,
    settings: Mapping[str, object],
    heap: str,
    join: Broker | None,
    full_jit: bool,
) -> Broker:
    if join is None:
        ports = Ports(*free_ports(5))
        broker = Broker(home, owns_home, 1, [], cluster_id(), f"1@{HOST}:{ports.controller}", ports,
                        make_pki(home / "pki"), settings, heap, full_jit)
        # The users go into the controller's bootstrap metadata, so they exist before it serves.
        scram = _scram_args()
    else:
        if join.ports.controller is None:
            raise ValueError("join= takes the cluster's first node (the one started without join)")
        # The cluster's settings unless overridden: a topic default must not depend on the node asked.
        broker = Broker(home, owns_home, len(join.cluster) + 1, join.cluster, join.cluster_id, join.voters,
                        Ports(*free_ports(4), controller=None), join.pki, {**join.settings, **settings}, heap,
                        full_jit)
        scram = []
    config = home / "server.properties"
    props = server_properties(broker.node_id, broker.voters, home / "data", broker.ports, broker.pki,
                              broker.settings)
    config.write_text(props)
    cds_opts, _ = JVM_BUILD.cds_options(dump=False)  # the broker writes the archive, this short run reads it
    res = subprocess.run(
        [java("java"), *JVM_OPTS, *QUICK_JIT, *cds_opts, "-cp", JVM_BUILD.classpath(),
         "kafka.tools.StorageTool", "format", "-t", broker.cluster_id, "-c", str(config), *scram],
        capture_output=True, text=True, timeout=120,
    )
    if res.returncode != 0:
        broker.cluster.remove(broker)
        raise RuntimeError(f"kafka-storage format failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return broker


_broker: Broker | None = None
_broker_lock = threading.Lock()


def ensure_broker() -> Broker:
    """One local broker per Python process, started on first use and closed at exit."""
    global _broker
    with _broker_lock:
        if _broker is None or not _broker.running():
            if _broker is not None:
                _broker.close()
            _broker = start()
            atexit.register(_broker.close)
        return _broker


def ensure_bootstrap() -> str:
    """$CCF_TEST_KAFKA if set (nothing started), else the PLAINTEXT address of ensure_broker()."""
    return os.environ.get(ENV_BOOTSTRAP) or ensure_broker().bootstrap


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kafka.launcher")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="download jars and compile the stdin watcher")
    run = sub.add_parser("run", help="start a broker and run until Ctrl-C or SIGTERM")
    run.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                     help="extra server property, e.g. --set auto.create.topics.enable=false")
    run.add_argument("--heap", default="512m")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        build()
        return 0

    t0 = time.monotonic()
    broker = start(settings=dict(args.set), heap=args.heap)
    # The PLAINTEXT bootstrap alone on stdout, so scripts can read it; the rest goes to stderr.
    print(broker.bootstrap, flush=True)
    users = ", ".join(f"{u}/{p}" for u, p in USERS.items())
    print(
        f"pid {broker.pid}, started in {time.monotonic() - t0:.1f}s, home {broker.home}\n"
        f"  SASL_PLAINTEXT {broker.address('SASL_PLAINTEXT')}  SSL {broker.address('SSL')}  "
        f"SASL_SSL {broker.address('SASL_SSL')}\n"
        f"  SCRAM ({', '.join(SCRAM_MECHANISMS)}) users {users}; CA {broker.ca_file}\nCtrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    serve_until_stopped(broker.running, broker.close)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
