"""Push rule evaluation (pure): which of a user's rules an event matches first, and what its
actions mean (client-server API "Push Rules", conditions as the spec and Synapse define them).

Rules are tried kind by kind (override, content, room, sender, underride) in ruleset order; the
first enabled rule whose conditions all hold gives the actions. A condition of a kind we do not
know never holds (spec: so the rule never matches). Content, room and sender rules are judged by
what they are (``pattern``, ``rule_id``) rather than by stored conditions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from homeserver.push.default_rules import KINDS, Rule

#: Legacy mention rules, skipped for an event that says whom it mentions (``m.mentions``), as
#: the spec (v1.7, "intentional mentions") and Synapse do.
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"}
)
#: Server-default rules whose conditions name the user they belong to; every other default rule
#: has the same conditions for everyone, so its verdict on an event is shared (``memo``).
USER_DEPENDENT_RULES = frozenset(
    {
        ".m.rule.invite_for_me",
        ".m.rule.is_user_mention",
        ".m.rule.contains_user_name",
        ".m.rule.contains_display_name",
    }
)
_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")
#: Synapse's default for ``notifications.room`` in power levels.
DEFAULT_NOTIFICATION_LEVEL = 50


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the conditions may read about one event, computed once for all its recipients."""

    event: Mapping[str, Any]
    room_member_count: int
    sender_power_level: int
    #: power levels' ``notifications`` (key → level needed).
    notification_levels: Mapping[str, Any]
    body: str | None
    #: the event's content has ``m.mentions``.
    has_mentions: bool = False


def context_for(
    event: Mapping[str, Any],
    *,
    room_member_count: int,
    sender_power_level: int,
    notification_levels: Mapping[str, Any] | None = None,
) -> EventContext:
    content = event.get("content")
    body = content.get("body") if isinstance(content, Mapping) else None
    return EventContext(
        event,
        room_member_count,
        sender_power_level,
        notification_levels or {},
        body if isinstance(body, str) else None,
        isinstance(content, Mapping) and "m.mentions" in content,
    )


@lru_cache(maxsize=1024)
def split_key(key: str) -> tuple[str, ...]:
    """A dotted key's parts: ``\\.`` is a literal dot and ``\\\\`` a backslash (spec v1.7)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(key)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            if nxt in (".", "\\"):
                current.append(nxt)
            else:
                current.append("\\" + nxt)
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return tuple(parts)


_MISSING = object()


def lookup(event: Mapping[str, Any], key: str) -> Any:
    value: Any = event
    for part in split_key(key):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


@lru_cache(maxsize=16384)
def _glob(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    body = "".join(".*?" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if word_boundary:
        # As Synapse: the pattern must sit between word boundaries (or the ends of the text).
        return re.compile(rf"(?:^|\W){body}(?:\W|$)", re.IGNORECASE | re.DOTALL)
    return re.compile(rf"^{body}$", re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    regex = _glob(pattern, word_boundary)
    return (regex.search if word_boundary else regex.match)(value) is not None


def _member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    match = _MEMBER_COUNT.match(spec)
    if match is None:
        return False
    op, number = match.group(1) or "==", int(match.group(2))
    return {
        "==": count == number,
        "<": count < number,
        ">": count > number,
        "<=": count <= number,
        ">=": count >= number,
    }[op]


def condition_holds(
    condition: Mapping[str, Any], ctx: EventContext, display_name: str | None
) -> bool:
    kind = condition.get("kind")
    if kind == "event_match":
        key, pattern = condition.get("key"), condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup(ctx.event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        value = lookup(ctx.event, key)
        wanted = condition.get("value")
        # JSON's true is not 1: compare types too.
        return value is not _MISSING and type(value) is type(wanted) and value == wanted
    if kind == "event_property_contains":
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        value = lookup(ctx.event, key)
        wanted = condition.get("value")
        return isinstance(value, list) and any(
            type(v) is type(wanted) and v == wanted for v in value
        )
    if kind == "contains_display_name":
        if not display_name or ctx.body is None:
            return False
        return re.search(rf"(^|\W){re.escape(display_name)}(\W|$)", ctx.body, re.I) is not None
    if kind == "room_member_count":
        return _member_count_matches(condition.get("is"), ctx.room_member_count)
    if kind == "sender_notification_permission":
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        needed = ctx.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        if not isinstance(needed, int) or isinstance(needed, bool):
            needed = DEFAULT_NOTIFICATION_LEVEL
        return ctx.sender_power_level >= needed
    return False


def rule_matches(kind: str, rule: Rule, ctx: EventContext, display_name: str | None) -> bool:
    if kind == "content":
        pattern = rule.get("pattern")
        return (
            isinstance(pattern, str)
            and ctx.body is not None
            and glob_matches(pattern, ctx.body, word_boundary=True)
        )
    if kind == "room":
        return ctx.event.get("room_id") == rule.get("rule_id")
    if kind == "sender":
        return ctx.event.get("sender") == rule.get("rule_id")
    conditions = rule.get("conditions")
    if not isinstance(conditions, list):
        return False
    return all(isinstance(c, Mapping) and condition_holds(c, ctx, display_name) for c in conditions)


def evaluate(
    ruleset: Mapping[str, list[Rule]],
    ctx: EventContext,
    display_name: str | None = None,
    memo: dict[str, bool] | None = None,
) -> list[Any] | None:
    """The actions of the first matching enabled rule; None when no rule matches. ``memo``
    (one dict per event, shared by all its recipients) keeps the verdicts of the default rules
    that do not depend on the user: a thousand members cost one evaluation of those."""
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            rule_id = rule.get("rule_id")
            if ctx.has_mentions and rule_id in LEGACY_MENTION_RULES:
                continue
            if not rule.get("enabled", True):
                continue
            if memo is not None and rule.get("default") and rule_id not in USER_DEPENDENT_RULES:
                key = f"{kind}/{rule_id}"
                matched = memo.get(key)
                if matched is None:
                    matched = memo[key] = rule_matches(kind, rule, ctx, display_name)
            else:
                matched = rule_matches(kind, rule, ctx, display_name)
            if matched:
                actions = rule.get("actions")
                return list(actions) if isinstance(actions, list) else []
    return None


#: Keys of the conditions through which a default rule names its user (``state_key`` of
#: ``.m.rule.invite_for_me``, the mentioned user IDs of ``.m.rule.is_user_mention``).
_USER_KEYS = frozenset({"state_key", "content.m\\.mentions.user_ids"})


def _fails_for_everyone(kind: str, rule: Rule, ctx: EventContext) -> bool:
    """Whether a user-dependent default rule matches nobody on this event: one of its
    conditions that does not name the user fails (the same for everyone), or it needs a body
    the event lacks, or a display name (never read for a ruleset of defaults only)."""
    if kind == "content":
        return ctx.body is None
    conditions = rule.get("conditions")
    if not isinstance(conditions, list):
        return True
    for condition in conditions:
        if not isinstance(condition, Mapping) or condition.get("kind") == "contains_display_name":
            return True
        if condition.get("key") in _USER_KEYS:
            # It names the user: it can match someone only if the event has that property.
            value = lookup(ctx.event, condition["key"])
            usable = isinstance(
                value, list if condition.get("kind") == "event_property_contains" else str
            )
            if not usable:
                return True
            continue
        if not condition_holds(condition, ctx, None):
            return True
    return False


def shared_default_verdict(
    ruleset: Mapping[str, list[Rule]], ctx: EventContext, memo: dict[str, bool]
) -> tuple[bool, list[Any] | None]:
    """For the server-default ruleset (any user's: they differ only where they name their
    user), ``(True, actions)`` when :func:`evaluate` gives every user of the defaults the same
    answer on this event — each rule before the first that matches anyone matches no one, and
    that one names no user — else ``(False, None)``. A join into a room of 10,000 members is
    then judged once, not once per member (each judged ``.m.rule.member_event``)."""
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            rule_id = rule.get("rule_id")
            if ctx.has_mentions and rule_id in LEGACY_MENTION_RULES:
                continue
            if not rule.get("enabled", True):
                continue
            if rule_id in USER_DEPENDENT_RULES or not rule.get("default"):
                if _fails_for_everyone(kind, rule, ctx):
                    continue
                return False, None
            key = f"{kind}/{rule_id}"
            matched = memo.get(key)
            if matched is None:
                matched = memo[key] = rule_matches(kind, rule, ctx, None)
            if matched:
                actions = rule.get("actions")
                return True, list(actions) if isinstance(actions, list) else []
    return True, None


def notifies(actions: list[Any] | None) -> bool:
    return bool(actions) and "notify" in actions  # type: ignore[operator]


def tweaks(actions: list[Any]) -> dict[str, Any]:
    """``set_tweak`` actions as a dict; a ``highlight`` tweak without a value means true."""
    found: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            found[name] = action.get("value", True if name == "highlight" else None)
    return found


def is_highlight(actions: list[Any]) -> bool:
    return tweaks(actions).get("highlight") is True
