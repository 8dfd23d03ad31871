"""Event relations (``content["m.relates_to"]``): which event an event relates to and how.

Pure: read at persistence (the ``event_relations`` table) and by the bundled aggregations. A
relation needs both ``rel_type`` and ``event_id`` as strings, as Synapse reads it; a reply
(``m.in_reply_to`` alone) is not a relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"

#: Relation types whose events never carry aggregations of their own (an edit or a reaction
#: cannot itself be edited, threaded or referenced into a bundle), as Synapse.
NO_BUNDLE_TYPES = frozenset({REPLACE, ANNOTATION})

#: Identifiers longer than this are not stored as relations (event IDs and relation types
#: the spec allows are far shorter), nor those holding NUL.
MAX_FIELD_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Relation:
    rel_type: str
    parent_id: str


def relation_of(content: Any) -> Relation | None:
    """The relation ``content`` declares, or None."""
    if not isinstance(content, dict):
        return None
    relates_to = content.get("m.relates_to")
    if not isinstance(relates_to, dict):
        return None
    rel_type = relates_to.get("rel_type")
    parent_id = relates_to.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent_id, str):
        return None
    if not rel_type or not parent_id or max(len(rel_type), len(parent_id)) > MAX_FIELD_LENGTH:
        return None
    if "\x00" in rel_type or "\x00" in parent_id:
        # PostgreSQL text cannot hold NUL: such a relation is not one we could look up.
        return None
    return Relation(rel_type, parent_id)
