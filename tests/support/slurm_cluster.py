"""A throw-away Slurm cluster on this machine: one node on loopback with two fake GPUs (the
Slurm test), or several CPU nodes, each in its own network and UTS namespace (the multi-node
tests).

Debian's packages (munge slurmctld slurmd slurm-client, installed by .ci/run) and root are all
it needs: no systemd, no cgroups, no accounting database. What was learned the hard way:

- slurm.conf and gres.conf go to /etc/slurm/, the compiled-in path: the slurm-jobstep plugin
  strips SLURM_CONF before its inner srun. Files there that this module did not write are
  never touched; a lock keeps two test sessions on one machine from sharing them.
- MinJobAge=600, so that squeue still knows finished jobs: with less than three times the
  plugin's --slurm-init-seconds-before-status-checks, it silently falls back to sacct, which
  fails without an accounting database (and then waits forever).
- The GPUs are character devices (plain files are rejected); jobs that ask for GPUs get
  CUDA_VISIBLE_DEVICES. SlurmdParameters=config_overrides lets the node declare more CPUs and
  memory than the machine has, so the profile's real requests fit a 2-core CI machine
  (nothing is enforced: no cgroups).
- Every daemon runs in the foreground as a child of this process and is stopped by its pid,
  after cancelling the cluster's jobs; every wait has a deadline.

Several nodes (``local_slurm(nodes=2)``): each slurmd runs in a network namespace of its own
(``ip netns``, iproute2), joined by a veth pair to a bridge on the host side, with its own
address on a private /24 that no route of this machine covers, and in a UTS namespace whose
hostname is its NodeName (slurmd finds its node by hostname, as on a real cluster). slurmctld
and munged stay on the host side, on the bridge's address; munge's socket is a file, so the
nodes reach it through the shared file system. Each slurmd also has a mount namespace, with
the cluster's hosts file bind-mounted on /etc/hosts: it names every node, as a site's DNS
would (torchrun and gloo resolve the hostname). Spool, pid and log files are per node (``%n``).
Only the namespaces and links created here are removed after.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import BIN

#: The binaries of Debian's munge, slurmctld, slurmd and slurm-client packages.
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
#: What the multi-node cluster needs besides: iproute2's ip, util-linux's nsenter, unshare.
NAMESPACE_BINARIES = ("ip", "nsenter", "unshare", "mount")
#: The interface of each node inside its namespace (GLOO_SOCKET_IFNAME would name it).
NODE_INTERFACE = "mrcnn0"
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by maskrcnn-pipeline tests/support/slurm_cluster.py: removed when the test ends"
LOCK = Path(tempfile.gettempdir()) / "maskrcnn-slurm-test.lock"
GPUS = 2
#: Job states of jobs that still hold (or wait for) the node.
ACTIVE = "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED"


def missing_binaries(names: tuple[str, ...] = BINARIES) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def why_not_runnable(nodes: int = 1) -> str | None:
    """A reason to skip, or None when a cluster of ``nodes`` can be started here."""
    missing = missing_binaries()
    if missing:
        return (
            f"Slurm is not installed (missing {', '.join(missing)}): .ci/run installs it with "
            "`apt-get install munge slurmctld slurmd slurm-client`"
        )
    if nodes > 1 and missing_binaries(NAMESPACE_BINARIES):
        missing = ", ".join(missing_binaries(NAMESPACE_BINARIES))
        return (
            f"several nodes need network namespaces (missing {missing}): apt-get install iproute2"
        )
    if os.geteuid() != 0:
        return "starting slurmctld and slurmd needs root (CI runs as root)"
    for name in ("slurm.conf", "gres.conf"):
        path = CONF_DIR / name
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            return f"{path} belongs to a real Slurm installation; this test will not replace it"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(
        f"--- {log}:\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists()
    )
    raise TimeoutError(f"{what} within {timeout:.0f} s\n{tails}")


def _run(*command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@contextmanager
def _exclusive(lock: Path, timeout: float) -> Iterator[None]:
    """One cluster per machine at a time: /etc/slurm and the daemons are machine-wide."""
    with open(lock, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another Slurm test holds {lock}") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Node:
    """A compute node: its NodeName (= hostname), address and, for several nodes, its
    network namespace and the host-side end of its veth pair."""

    name: str
    address: str
    netns: str | None = None
    host_link: str | None = None


@dataclass
class LocalSlurm:
    """A running cluster: its state folder, its nodes and the daemons this process started."""

    root: Path
    host: str
    nodes: list[Node]
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def logs(self) -> list[Path]:
        names = ["munged", "slurmctld", *(f"{node.name}.slurmd" for node in self.nodes)]
        return [self.root / f"{name}.log" for name in names]

    def node_state(self) -> str:
        """The nodes' states, one per line (``idle`` for one idle node)."""
        return _run("sinfo", "--noheader", "--Node", "--format=%T").stdout.strip()

    def node(self, name: str) -> Node:
        (node,) = (node for node in self.nodes if node.name == name)
        return node

    def pids_on(self, node: Node) -> set[int]:
        """Every process in the node's network namespace (its slurmd included)."""
        assert node.netns, "only nodes in a namespace of their own have their own processes"
        listed = _run("ip", "netns", "pids", node.netns).stdout.split()
        return {int(pid) for pid in listed}

    def start_slurmd(self, node: Node) -> None:
        """slurmd of ``node``, in its namespaces when it has them (hostname = NodeName)."""
        (self.root / "spool" / node.name).mkdir(parents=True, exist_ok=True)
        command = ["slurmd", "-D"]
        if node.netns:
            # nsenter and unshare exec in place: the child's pid is slurmd's. A mount
            # namespace of its own, so that the node's hosts file can be bind-mounted on
            # /etc/hosts (`ip netns exec` would do that too, but it remounts /sys without
            # the cgroup file system slurmd wants: "No filesystem mounted on /sys/fs/cgroup")
            command = [
                "nsenter", f"--net=/run/netns/{node.netns}",
                "unshare", "--uts", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$1" /etc/hosts && hostname "$0" && shift && exec "$@"',
                node.name, str(self.root / "hosts"), *command,
            ]  # fmt: skip
        with open(self.root / f"{node.name}.slurmd.out", "wb") as out:
            self.daemons[f"slurmd:{node.name}"] = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def crash(self, node: Node) -> None:
        """The node goes down: SIGKILL to every process on it, its slurmd and job steps."""
        for pid in self.pids_on(node):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process = self.daemons.pop(f"slurmd:{node.name}")
        process.wait(timeout=15)

    def wait_idle(self, timeout: float = 90) -> None:
        expected = "\n".join(["idle"] * len(self.nodes))
        _wait_for("the nodes idle", lambda: self.node_state() == expected, timeout, self.logs)

    def stop(self, timeout: float = 15) -> None:
        """Cancel the cluster's jobs, then stop the daemons started here, by pid."""
        if "slurmctld" in self.daemons:
            with suppress(subprocess.SubprocessError, OSError):
                _run("scancel", "--user", "root", "--full")
                _wait_for(
                    "jobs cancelled",
                    lambda: not _run("squeue", "--noheader", f"--states={ACTIVE}").stdout.strip(),
                    10,
                    [],
                )
        slurmds = [name for name in self.daemons if name.startswith("slurmd")]
        for name in (*slurmds, "slurmctld", "munged"):
            process = self.daemons.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)


def _config_lines(root: Path, host: str, controller: str, nodes: list[Node]) -> list[str]:
    munge_socket = root / "munge" / "munge.socket.2"
    one = len(nodes) == 1
    lines = [
        MARKER,
        "ClusterName=maskrcnn-test",
        f"SlurmctldHost={host}({controller})",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire: also how long a requeued job waits before it may start again
        # (default 120 s)
        f"AuthInfo=socket={munge_socket},cred_expire=10",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=1000",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "GresTypes=gpu",
        "MinJobAge=600",
        "ReturnToService=2",
        # a lost node is noticed within seconds, and a cancelled job's processes get
        # SIGKILL 10 s after SIGTERM (checkpointing the tiny model takes well under that)
        "SlurmdTimeout=5",
        # a requeued job starts within seconds of its begin time, not at the next minute
        "SchedulerParameters=bf_interval=2,sched_interval=2",
        "KillWait=10",
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool' / '%n'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / '%n.slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / '%n.slurmd.log'}",
    ]
    gres = f" Gres=gpu:{GPUS}" if one else ""
    for node in nodes:
        lines.append(
            f"NodeName={node.name} NodeAddr={node.address} CPUs=16 RealMemory=256000{gres}"
            " State=UNKNOWN"
        )
    lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return lines


def _write_config(root: Path, host: str, controller: str, nodes: list[Node]) -> None:
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    (CONF_DIR / "slurm.conf").write_text("\n".join(_config_lines(root, host, controller, nodes)))
    if len(nodes) > 1:
        return  # the multi-node cluster trains on CPUs: no GPUs
    devices = root / "gpus"
    devices.mkdir()
    for index in range(GPUS):
        os.mknod(devices / f"nvidia{index}", 0o666 | 0o020000, os.makedev(1, 3))
    (CONF_DIR / "gres.conf").write_text(
        f"{MARKER}\nNodeName={nodes[0].name} Name=gpu File={devices}/nvidia[0-{GPUS - 1}]\n"
    )


def _remove_config() -> None:
    for name in ("slurm.conf", "gres.conf"):
        path = CONF_DIR / name
        if path.exists() and MARKER in path.read_text(errors="replace"):
            path.unlink()


def _start_munge(cluster: LocalSlurm) -> None:
    """munged as user munge, with its own key and socket (checked by munged: owner, modes)."""
    folder = cluster.root / "munge"
    folder.mkdir(mode=0o755)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (folder, key):
        shutil.chown(path, "munge", "munge")
    log = cluster.root / "munged.log"
    shutil.chown(cluster.root, "munge", "munge")  # munged writes its log and seed here
    cluster.daemons["munged"] = subprocess.Popen(
        [
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={folder / 'munge.socket.2'}",
            f"--pid-file={folder / 'munged.pid'}",
            f"--log-file={log}",
            f"--seed-file={folder / 'munged.seed'}",
        ],
        user="munge",
        group="munge",
        extra_groups=[],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    _wait_for("munged listening", (folder / "munge.socket.2").exists, 20, [log])


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no route of this machine overlaps."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout.split("\n")
    used = []
    for line in routes:
        word = line.split(" ", 1)[0]
        with suppress(ValueError):
            if word not in ("default", "broadcast", "local", ""):
                used.append(ipaddress.ip_network(word, strict=False))
    for third in range(200, 256):
        subnet = ipaddress.ip_network(f"10.{os.getpid() % 200 + 20}.{third}.0/24")
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test cluster")


def _ip(*args: str) -> None:
    result = _run("ip", *args)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextmanager
def _network(count: int, tag: str) -> Iterator[tuple[str, list[Node]]]:
    """A bridge on the host side with the controller's address, and ``count`` namespaces
    joined to it, each with the next address; yields the controller's address and the nodes.
    Removes exactly what it created."""
    subnet = _free_subnet()
    hosts = list(subnet.hosts())
    bridge = f"mrc{tag}br"
    prefix = f"/{subnet.prefixlen}"
    nodes = [
        Node(f"mrcnn-n{i}", str(hosts[i]), f"maskrcnn-{tag}-n{i}", f"mrc{tag}h{i}")
        for i in range(1, count + 1)
    ]
    created_links: list[str] = []
    created_netns: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        created_links.append(bridge)
        _ip("addr", "add", f"{hosts[0]}{prefix}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for node in nodes:
            _ip("netns", "add", node.netns)
            created_netns.append(node.netns)
            _ip("link", "add", node.host_link, "type", "veth", "peer", "name", NODE_INTERFACE,
                "netns", node.netns)  # fmt: skip
            created_links.append(node.host_link)
            _ip("link", "set", node.host_link, "master", bridge, "up")
            _ip("-n", node.netns, "addr", "add", f"{node.address}{prefix}", "dev", NODE_INTERFACE)
            _ip("-n", node.netns, "link", "set", NODE_INTERFACE, "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")
        yield str(hosts[0]), nodes
    finally:
        for link in reversed(created_links):
            with suppress(RuntimeError):
                _ip("link", "del", link)
        for netns in created_netns:
            with suppress(RuntimeError):
                _ip("netns", "del", netns)


@contextmanager
def _loopback(host: str) -> Iterator[tuple[str, list[Node]]]:
    yield "127.0.0.1", [Node(host, "127.0.0.1")]


@contextmanager
def local_slurm(timeout: float = 90, nodes: int = 1) -> Iterator[LocalSlurm]:
    """Start munged, slurmctld and a slurmd per node; yield once every node is idle; stop
    them after (and remove the nodes' namespaces)."""
    with _exclusive(LOCK, timeout=900):
        root = Path(tempfile.mkdtemp(prefix="maskrcnn-slurm-", dir="/run"))
        root.chmod(0o755)
        host = socket.gethostname().split(".")[0]
        network = _loopback(host) if nodes == 1 else _network(nodes, f"{os.getpid() % 10000}")
        with network as (controller, members):
            for sub in ("state", "spool"):
                (root / sub).mkdir()
            cluster = LocalSlurm(root=root, host=host, nodes=members)
            names = "".join(f"{node.address} {node.name}\n" for node in members)
            (root / "hosts").write_text(f"127.0.0.1 localhost\n{names}")
            try:
                _write_config(root, host, controller, members)
                _start_munge(cluster)
                _start_daemon(cluster, "slurmctld")
                _wait_for(
                    "slurmctld answering",
                    lambda: "UP" in _run("scontrol", "ping").stdout,
                    timeout,
                    cluster.logs,
                )
                for node in members:
                    cluster.start_slurmd(node)
                cluster.wait_idle(timeout)
                yield cluster
            finally:
                cluster.stop()
                _remove_config()
                shutil.rmtree(root, ignore_errors=True)


def _start_daemon(cluster: LocalSlurm, name: str) -> None:
    with open(cluster.root / f"{name}.out", "wb") as out:
        cluster.daemons[name] = subprocess.Popen(
            [name, "-D"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def profile_command(timeout_s: float, *extra: str) -> list[str]:
    """snakemake through profiles/slurm as shipped, plus what a cluster without an accounting
    database needs: squeue for job status, a short first status check (pitfalls 2, 3), and
    ``timeout``, since the plugin can wait forever on a failing sacct. --verbose prints each
    sbatch call."""
    return [
        "timeout", "-k", "10", str(timeout_s),
        str(BIN / "snakemake"), "--profile", "profiles/slurm",
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--verbose", *extra,
    ]  # fmt: skip


#: An sbatch call as the plugin logs it (--verbose); its --comment names the rule.
SBATCH = r"^sbatch call: (sbatch .*--comment rule_({rule})(?:_wildcards_\S+)?\s.*)$"


def sbatch_calls(output: str, rule: str) -> list[str]:
    """The sbatch calls of ``rule`` in snakemake's output, in order."""
    pattern = SBATCH.format(rule=re.escape(rule))
    return [call for call, _ in re.findall(pattern, output, flags=re.MULTILINE)]


def submitted(output: str) -> Counter[str]:
    """sbatch calls per rule (a retried job counts twice)."""
    pattern = SBATCH.format(rule=r"\w+?")
    return Counter(rule for _, rule in re.findall(pattern, output, flags=re.MULTILINE))


def slurm_logs(workdir: Path, rule: str) -> list[Path]:
    """.snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log, in job id order."""
    folder = workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}"
    return sorted(folder.rglob("*.log"), key=lambda log: int(log.stem))
