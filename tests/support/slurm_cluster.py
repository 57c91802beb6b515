"""A throw-away one-node Slurm cluster on loopback, with two fake GPUs, for the Slurm test.

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
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

#: The binaries of Debian's munge, slurmctld, slurmd and slurm-client packages.
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by maskrcnn-pipeline tests/support/slurm_cluster.py: removed when the test ends"
LOCK = Path(tempfile.gettempdir()) / "maskrcnn-slurm-test.lock"
GPUS = 2
#: Job states of jobs that still hold (or wait for) the node.
ACTIVE = "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def why_not_runnable() -> str | None:
    """A reason to skip, or None when a cluster can be started here."""
    missing = missing_binaries()
    if missing:
        return (
            f"Slurm is not installed (missing {', '.join(missing)}): .ci/run installs it with "
            "`apt-get install munge slurmctld slurmd slurm-client`"
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


@dataclass
class LocalSlurm:
    """A running cluster: its state folder and the daemons this process started."""

    root: Path
    host: str
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def logs(self) -> list[Path]:
        return [self.root / f"{name}.log" for name in ("munged", "slurmctld", "slurmd")]

    def node_state(self) -> str:
        return _run("sinfo", "--noheader", "--Node", "--format=%T").stdout.strip()

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
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.daemons.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)


def _write_config(root: Path, host: str) -> None:
    munge_socket = root / "munge" / "munge.socket.2"
    lines = [
        MARKER,
        "ClusterName=maskrcnn-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
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
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=256000 Gres=gpu:{GPUS}"
        " State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    (CONF_DIR / "slurm.conf").write_text("\n".join(lines) + "\n")
    devices = root / "gpus"
    devices.mkdir()
    for index in range(GPUS):
        os.mknod(devices / f"nvidia{index}", 0o666 | 0o020000, os.makedev(1, 3))
    (CONF_DIR / "gres.conf").write_text(
        f"{MARKER}\nNodeName={host} Name=gpu File={devices}/nvidia[0-{GPUS - 1}]\n"
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


def _start_daemon(cluster: LocalSlurm, name: str) -> None:
    with open(cluster.root / f"{name}.out", "wb") as out:
        cluster.daemons[name] = subprocess.Popen(
            [name, "-D"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


@contextmanager
def local_slurm(timeout: float = 90) -> Iterator[LocalSlurm]:
    """Start munged, slurmctld and slurmd; yield once the node is idle; stop them after."""
    with _exclusive(LOCK, timeout=900):
        root = Path(tempfile.mkdtemp(prefix="maskrcnn-slurm-", dir="/run"))
        root.chmod(0o755)
        for sub in ("state", "spool"):
            (root / sub).mkdir()
        cluster = LocalSlurm(root=root, host=socket.gethostname().split(".")[0])
        try:
            _write_config(root, cluster.host)
            _start_munge(cluster)
            _start_daemon(cluster, "slurmctld")
            _wait_for(
                "slurmctld answering",
                lambda: "UP" in _run("scontrol", "ping").stdout,
                timeout,
                cluster.logs,
            )
            _start_daemon(cluster, "slurmd")
            _wait_for(
                "the node idle", lambda: cluster.node_state() == "idle", timeout, cluster.logs
            )
            yield cluster
        finally:
            cluster.stop()
            _remove_config()
            shutil.rmtree(root, ignore_errors=True)
