"""Elastic Common Schema names for Winston's common fields, and index-safe exception records.

Winston and ECS disagree on two names: Winston's `service` (defaultMeta) is a string and ECS
`service` is an object (`service.name`); the app's `error` is a string (`{error:
'insufficient_funds'}`) and ECS `error` is an object (`error.message`). One index mapping
cannot hold both shapes of a field, so the choice is per input, and ECS is off by default:

- off: documents keep the app's shape (what the existing indices are mapped for);
- on (`ecs: true`): the ECS fields are added beside the originals (`log.level` beside `level`,
  `error.stack_trace` beside `stack`, `service.version` beside `version`), and the two strings
  that ECS needs as objects move into them: `service: "x"` becomes `service.name: "x"`,
  `error: "x"` becomes `error.message: "x"`. Nothing is lost; ship such an input to an index
  (or data stream) of its own. Records seen by routes and alerts keep the app's shape either way.

Whatever the setting, Winston's exception and rejection handlers (`exception: true`) put the
thrown value in `error`: an Error serialises as an object (`{}`), which an index that has seen
`error` as text rejects. Without ECS that object moves to `error_original`, the convention the
pipeline already uses for a record's value that cannot stay where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_FIELDS: tuple[tuple[str, str], ...] = (
    ("level", "log.level"),
    ("error", "error.message"),
    ("stack", "error.stack_trace"),
    ("service", "service.name"),
    ("version", "service.version"),
)


@dataclass(frozen=True)
class EcsConfig:
    fields: tuple[tuple[str, tuple[str, ...]], ...]  # (record field, ECS path)

    @classmethod
    def of(cls, pairs: tuple[tuple[str, str], ...] = DEFAULT_FIELDS) -> EcsConfig:
        return cls(tuple((src, tuple(dst.split("."))) for src, dst in pairs))


def set_aside(doc: dict[str, Any], name: str, value: Any) -> None:
    """Keep a record's value that cannot stay at `name` under `name_original`, or, when the record
    has that field too, the first free `name_original_N`: neither of its values is lost."""
    aside = f"{name}_original"
    n = 1
    while aside in doc:
        n += 1
        aside = f"{name}_original_{n}"
    doc[aside] = value


def to_ecs(rec: dict[str, Any], cfg: EcsConfig) -> dict[str, Any]:
    """A new document dict with the ECS fields; `rec` is left as it is."""
    doc = dict(rec)
    # Moves first (service -> service.name), so the object exists before copies land in it.
    for src, path in cfg.fields:
        if path[0] == src and src in rec and type(rec[src]) is not dict and rec[src] is not None:
            value = doc.pop(src)
            _put(doc, path, value)
    for src, path in cfg.fields:
        if path[0] == src or src not in rec or rec[src] is None:
            continue
        top = doc.get(path[0])
        if top is not None and type(top) is not dict:
            set_aside(doc, path[0], top)  # the record's own non-object value, kept
            doc[path[0]] = {}
        _put(doc, path, rec[src])
    return doc


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        nxt = doc.get(part)
        if type(nxt) is not dict:
            if nxt is not None:
                set_aside(doc, part, nxt)
            nxt = doc[part] = {}
        doc = nxt
    doc.setdefault(path[-1], value)  # never overwrite what the record already has there


def index_safe(doc: dict[str, Any]) -> None:
    """Without ECS: the exception handlers' thrown object moves out of `error` (see above)."""
    if doc.get("exception") is True and type(doc.get("error")) in (dict, list):
        set_aside(doc, "error", doc.pop("error"))
