"""Mosquitto set-up for a GridWatch site: one login per edge and per central instance, an ACL, bound client ids.

``gridwatch-central broker-config`` (central/cli.py) calls ``write_site``. It writes a directory with

- ``mosquitto.conf``: no anonymous access (``per_listener_settings true``; every listener has its own
  ``allow_anonymous false``, password file, ACL file and ``use_username_as_clientid true``), persistence, a packet
  size limit, a plain listener (1883) and, with TLS files, a TLS listener (8883);
- ``passwd``: one user per edge id and per central instance, PBKDF2-SHA512 hashes (``mosquitto_passwd`` when it is
  installed, else the same ``$7$`` format computed here); mode 0600;
- ``acl``: an edge may write only ``<prefix>/<its edge id>/#`` and read nothing; a central user may read
  ``<prefix>/+/#`` and write nothing; everything else (``$SYS``, other prefixes) is denied;
- ``tls/ca.crt``, ``tls/server.crt``, ``tls/server.key`` (copied from ``--tls-dir``, key 0600) when TLS is on.

``use_username_as_clientid`` makes the broker replace whatever client id a client sends by its user name, so a
client with an edge's login can never resume (or kick off) central's persistent session or another edge's: its
session is the edge's own. Consequence: each central instance needs its own user name (its session is named after
it); the configured ``mqtt.client_id`` is then only a label.

Passwords are generated (32 URL-safe characters, 192 bits) only for users that are new or asked to be rotated;
existing users keep their hashes, so adding an edge does not log every other edge out. The new plaintexts are
returned to the caller (printed once or written to a 0600 file) and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from central.files import atomic_write

# Same rule as edge_id in cameras.yaml (edge/config.py ID_PATTERN): safe as an MQTT topic level, a user name and
# an ACL word (no '/', '+', '#', ':', spaces).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes ($7$101$…)
DEFAULT_MAX_PACKET_BYTES = 2_100_000  # above central's max_payload_bytes default (2,000,000) plus topic and header
TLS_NAMES = {
    "ca": ("ca.crt", "ca.pem", "ca-cert.pem"),
    "cert": ("server.crt", "server.pem", "broker.crt", "broker.pem", "cert.pem"),
    "key": ("server.key", "broker.key", "key.pem", "server-key.pem"),
}


class BrokerConfigError(ValueError):
    """The site description is invalid (bad or duplicate name, missing TLS file, bad prefix)."""


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass
class BrokerSite:
    edges: list[str]
    centrals: list[str] = field(default_factory=lambda: ["central"])
    topic_prefix: str = "gridwatch/v1"
    port: int = 1883
    bind: str | None = None  # plain listener address; None: all interfaces (127.0.0.1 by default with TLS)
    plain: bool = True
    tls: TlsFiles | None = None
    tls_port: int = 8883
    tls_bind: str | None = None
    broker_dir: str | None = None  # where the broker will see the output directory (default: its absolute path)
    data_dir: str = "/var/lib/mosquitto/"
    log_dest: str = "stderr"  # stderr | stdout | syslog | file <path>
    run_as: str | None = None  # Mosquitto's `user` option
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    max_queued_messages: int = 100_000

    def validate(self) -> None:
        if not self.edges:
            raise BrokerConfigError("no edges: give --edge EDGE_ID (repeatable) or list mqtt.edges in central.yaml")
        if not self.centrals:
            raise BrokerConfigError("no central user: give --central NAME")
        for kind, names in (("edge id", self.edges), ("central user", self.centrals)):
            for n in names:
                if not isinstance(n, str) or not NAME_RE.match(n):
                    raise BrokerConfigError(f"{kind} {n!r} must match {NAME_RE.pattern} (letters, digits, '_', '.', "
                                            "'-'; no '/', '+', '#', ':' or spaces)")
        names = [*self.edges, *self.centrals]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise BrokerConfigError(f"duplicate user names: {', '.join(dup)} (edge ids and central users share one "
                                    "namespace)")
        p = self.topic_prefix
        if not p or p.startswith("/") or p.endswith("/") or any(c in p for c in "+#\x00 ") or p.startswith("$"):
            raise BrokerConfigError(f"topic prefix {p!r} must be non-empty, without '+', '#', spaces, a leading '$' "
                                    "or a leading/trailing '/'")
        for name, port in (("port", self.port), ("tls port", self.tls_port)):
            if not 1 <= port <= 65535:
                raise BrokerConfigError(f"{name} {port} is not a TCP port")
        if self.tls is not None and self.plain and self.port == self.tls_port:
            raise BrokerConfigError("the plain and the TLS listener need different ports")
        if not self.plain and self.tls is None:
            raise BrokerConfigError("--no-plain needs a TLS listener (--tls-dir): the broker would have no listener")
        if self.max_packet_bytes < 20_000:
            raise BrokerConfigError("max packet size below 20000 bytes cannot carry an incident event")


# --------------------------------------------------------------------------- files


def find_tls_files(tls_dir: Path) -> TlsFiles:
    """CA certificate, server certificate and key in ``tls_dir``, by their usual names."""
    found: dict[str, Path] = {}
    for kind, names in TLS_NAMES.items():
        for n in names:
            if (tls_dir / n).is_file():
                found[kind] = tls_dir / n
                break
        else:
            raise BrokerConfigError(f"{tls_dir}: no {kind} file (looked for {', '.join(names)})")
    return TlsFiles(found["ca"], found["cert"], found["key"])


def render_acl(site: BrokerSite) -> str:
    p = site.topic_prefix
    lines = [
        "# GridWatch broker ACL, generated by `gridwatch-central broker-config`. Anything not listed is denied",
        "# (other edges' topics, $SYS, other prefixes). Edit the edge list and regenerate rather than editing here.",
        "",
    ]
    for c in site.centrals:
        lines += [f"# central instance {c}: reads every edge's incidents, status, heartbeats and crowd figures",
                  f"user {c}", f"topic read {p}/+/#", ""]
    for e in site.edges:
        lines += [f"# edge {e}: writes its own topics (incidents, status + will, heartbeat, crowd), reads nothing",
                  f"user {e}", f"topic write {p}/{e}/#", ""]
    return "\n".join(lines)


def _listener_block(site: BrokerSite, base: str, port: int, bind: str | None) -> list[str]:
    return [
        f"listener {port}" + (f" {bind}" if bind else ""),
        "allow_anonymous false",
        f"password_file {base}/passwd",
        f"acl_file {base}/acl",
        # the broker replaces any client id by the user name: no login can take another identity's session
        "use_username_as_clientid true",
    ]


def render_conf(site: BrokerSite, broker_dir: str) -> str:
    base = broker_dir.rstrip("/") or "/"
    data_dir = site.data_dir if site.data_dir.endswith("/") else site.data_dir + "/"
    lines = [
        "# GridWatch Mosquitto configuration, generated by `gridwatch-central broker-config` (docs/mqtt.md).",
        "# No anonymous access; one login per edge and per central instance; the ACL lets an edge write only its own",
        f"# topics ({site.topic_prefix}/<edge id>/#) and central read; client ids are replaced by user names.",
        "per_listener_settings true",
        "persistence true",
        f"persistence_location {data_dir}",
        "# save sessions and queued messages every 5 s (Mosquitto's default is 30 minutes): a broker crash then loses",
        "# at most 5 s of its state, and central's persistent session is on disk seconds after its first subscription",
        "autosave_interval 5",
        f"max_queued_messages {site.max_queued_messages}",
        f"max_packet_size {site.max_packet_bytes}",
        f"log_dest {site.log_dest}",
        "log_type error", "log_type warning", "log_type notice", "log_type information",
        "connection_messages true",
    ]  # fmt: skip
    if site.run_as:
        lines.append(f"user {site.run_as}")
    if site.plain:
        bind = site.bind if site.bind is not None else ("127.0.0.1" if site.tls is not None else None)
        lines += ["", "# plain MQTT" + (" (local clients only)" if bind in ("127.0.0.1", "localhost", "::1") else "")]
        lines += _listener_block(site, base, site.port, bind)
    if site.tls is not None:
        lines += ["", "# MQTT over TLS (edges across the network)"]
        lines += _listener_block(site, base, site.tls_port, site.tls_bind)
        lines += [f"cafile {base}/tls/ca.crt", f"certfile {base}/tls/server.crt", f"keyfile {base}/tls/server.key",
                  "tls_version tlsv1.2", "require_certificate false"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- passwords


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def _python_hash(password: str) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_passwd_binary() -> str | None:
    return shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd") if os.access(p, os.X_OK)), None)


def hash_password(user: str, password: str, binary: str | None = None) -> str:
    """The password-file hash of ``password``: by ``mosquitto_passwd`` when installed (the password goes through
    its stdin, never the command line), else the same PBKDF2-SHA512 ``$7$`` format computed here."""
    binary = binary if binary is not None else mosquitto_passwd_binary()
    if binary:
        with tempfile.TemporaryDirectory(prefix="gw-passwd-") as tmp:
            pwfile = Path(tmp) / "passwd"
            pwfile.touch(mode=0o600)
            done = subprocess.run([binary, str(pwfile), user], input=f"{password}\n{password}\n", text=True,
                                  capture_output=True, timeout=30)  # fmt: skip
            line = pwfile.read_text().strip()
            if done.returncode == 0 and line.startswith(f"{user}:"):
                return line.split(":", 1)[1]
    return _python_hash(password)


def verify_password(password: str, hashed: str) -> bool:
    """Check a ``$7$`` (PBKDF2-SHA512) hash, as Mosquitto 2 does. Other formats → False."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    return secrets.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations), digest)


def read_password_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and ":" in line:
            user, hashed = line.split(":", 1)
            out[user] = hashed
    return out


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write atomically; the file has ``mode`` from its creation (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode=mode)


def render_credentials(creds: dict[str, str], site: BrokerSite) -> str:
    lines = [
        "# MQTT logins made by `gridwatch-central broker-config`: shown once, store them now (a password manager,",
        "# or the secret store of each box). Edge: cameras.yaml mqtt.username = the name, mqtt.password =",
        "# ${GRIDWATCH_MQTT_PASSWORD} with that variable set to the password. Central: central.yaml mqtt.username /",
        "# mqtt.password the same way. Only new or rotated users are listed; the others kept their passwords.",
    ]
    for user, pw in creds.items():
        role = "central" if user in site.centrals else "edge"
        lines.append(f'{user}: "{pw}"   # {role}')
    return "\n".join(lines) + "\n"


@dataclass
class WriteResult:
    files: list[Path]
    users: list[str]
    new_credentials: dict[str, str] = field(repr=False)  # user → plaintext, only new or rotated users
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    hasher: str = "mosquitto_passwd"


def write_site(
    site: BrokerSite, out_dir: Path, *, rotate: Iterable[str] = (), rotate_all: bool = False,
    passwd_binary: str | None = None,
) -> WriteResult:
    """Write mosquitto.conf, passwd, acl (and tls/) into ``out_dir``. Returns the new plaintext passwords."""
    site.validate()
    out_dir = Path(out_dir)
    rotate = set(rotate)
    users = [*site.centrals, *site.edges]
    unknown = sorted(rotate - set(users))
    if unknown:
        raise BrokerConfigError(f"--rotate {', '.join(unknown)}: not a user of this site ({', '.join(users)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    broker_dir = site.broker_dir or str(out_dir.resolve())
    files: list[Path] = []

    if site.tls is not None:
        tls_out = out_dir / "tls"
        tls_out.mkdir(exist_ok=True)
        for src, name, mode in ((site.tls.ca, "ca.crt", 0o644), (site.tls.cert, "server.crt", 0o644),
                                (site.tls.key, "server.key", 0o600)):
            try:
                data = Path(src).read_text()
            except OSError as e:
                raise BrokerConfigError(f"cannot read TLS file {src}: {e.strerror}") from None
            if Path(src).resolve() != (tls_out / name).resolve():
                _write_private(tls_out / name, data, mode)
            files.append(tls_out / name)

    existing = read_password_file(out_dir / "passwd")
    binary = passwd_binary if passwd_binary is not None else (mosquitto_passwd_binary() or "")
    new: dict[str, str] = {}
    entries: list[str] = []
    kept: list[str] = []
    for user in users:
        if user in existing and not rotate_all and user not in rotate:
            entries.append(f"{user}:{existing[user]}")
            kept.append(user)
            continue
        password = generate_password()
        new[user] = password
        entries.append(f"{user}:{hash_password(user, password, binary)}")
    _write_private(out_dir / "passwd", "\n".join(entries) + "\n", 0o600)
    _write_private(out_dir / "acl", render_acl(site), 0o644)
    _write_private(out_dir / "mosquitto.conf", render_conf(site, broker_dir), 0o644)
    files += [out_dir / "mosquitto.conf", out_dir / "passwd", out_dir / "acl"]
    removed = sorted(set(existing) - set(users))
    return WriteResult(files, users, new, kept, removed, "mosquitto_passwd" if binary else "built-in PBKDF2-SHA512")


def write_credentials(path: Path, text: str) -> None:
    """The plaintext logins, mode 0600 from creation."""
    _write_private(Path(path), text, 0o600)
