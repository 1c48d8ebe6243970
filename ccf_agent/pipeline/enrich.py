"""Enrichment: static fields, host metadata, an environment label, lookup tables.

Everything but lookups is the same for every record, so it is computed once per pipeline
and spliced as constant bytes; a lookup costs one dict get per record and configured table.
Enrichment never overwrites a field the record has: the record's own value wins.
"""

from __future__ import annotations

import csv
import fcntl
import ipaddress
import json
import platform
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Lookup:
    """Adds `target: table[value of field]` when the record's field (dotted path) has a listed value."""

    field: tuple[str, ...]
    target: str
    table: Mapping[str, Any]

    def find(self, rec: Mapping[str, Any]) -> Any:
        value: Any = rec
        for part in self.field:
            if type(value) is not dict:
                return None
            value = value.get(part)
        if value is None or type(value) in (dict, list):
            return None
        key = value if type(value) is str else (str(value).lower() if type(value) is bool else str(value))
        return self.table.get(key)


@dataclass(frozen=True)
class EnrichConfig:
    fields: Mapping[str, Any] = field(default_factory=dict)  # static, on every document
    environment: str | None = None  # NODE_ENV-style label, as `environment`
    host_ip: bool = False
    host_os: bool = False
    lookups: tuple[Lookup, ...] = ()


def host_metadata(hostname: str, ip: bool, os_info: bool) -> dict[str, Any]:
    """The ECS `host` object: name, and on request hostname, IPs, OS and architecture."""
    host: dict[str, Any] = {"name": hostname}
    if ip or os_info:
        host["hostname"] = socket.gethostname()
    if ip:
        addresses = local_ips()
        if addresses:
            host["ip"] = addresses
    if os_info:
        host["os"] = os_metadata()
        host["architecture"] = platform.machine()
    return host


def local_ips() -> list[str]:
    """Addresses of this host's interfaces, loopback and IPv6 link-local left out (Linux)."""
    found: list[str] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    try:
        for row in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr = row.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        pass
    out: list[str] = []
    for a in found:
        addr = ipaddress.ip_address(a)
        if addr.is_loopback or addr.is_link_local or a in out:
            continue
        out.append(a)
    return out


def os_metadata() -> dict[str, str]:
    info = {"type": platform.system().lower(), "kernel": platform.release()}
    try:
        release = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    except OSError:
        release = {}
    unquote = {k: v.strip().strip('"') for k, v in release.items()}
    if "NAME" in unquote:
        info["name"] = unquote["NAME"]
    if "VERSION_ID" in unquote:
        info["version"] = unquote["VERSION_ID"]
    if "ID" in unquote:
        info["platform"] = unquote["ID"]
    if "ID_LIKE" in unquote or "ID" in unquote:
        info["family"] = (unquote.get("ID_LIKE") or unquote["ID"]).split()[0]
    return info


def load_table(path: str) -> dict[str, Any]:
    """A lookup table from a file: a JSON or YAML mapping, or a CSV whose first column is the key
    (the other columns become the added object). Raises ValueError with what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read lookup table {path}: {getattr(e, 'strerror', None) or e}") from e
    suffix = p.suffix.lower()
    if suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows or len(rows[0]) < 2:
            raise ValueError(f"{path}: a CSV table needs a header with a key column and at least one more")
        header = rows[0]
        return {r[0]: dict(zip(header[1:], r[1:], strict=False)) for r in rows[1:] if r}
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not valid {'JSON' if suffix == '.json' else 'YAML'}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a lookup table must be a mapping of value -> fields")
    return {str(k): v for k, v in data.items()}
