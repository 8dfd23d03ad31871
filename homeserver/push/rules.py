"""A user's push rules: the server defaults merged with the user's own rules and overrides,
and the checks behind ``/pushrules`` (shapes as Synapse answers them).

Order within a kind: ``.m.rule.master`` first, then the user's rules (highest priority first),
then the other server-default rules — user rules outrank defaults, except master (spec,
"Predefined Rules").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.push.default_rules import KINDS, MASTER_RULE_ID, Rule, default_rules
from homeserver.storage import Store
from homeserver.storage.push_rules import StoredRule, UnknownAnchorError
from homeserver.streams.notifier import Notifier

_SIMPLE_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})
ATTRIBUTES = ("enabled", "actions")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise BadRequest(f"Unknown template: {kind}", Codes.INVALID_PARAM)


def check_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise BadRequest("No actions found", Codes.BAD_JSON)
    for action in actions:
        if isinstance(action, str) and action in _SIMPLE_ACTIONS:
            continue
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            continue
        raise BadRequest("Unrecognised action", Codes.BAD_JSON)
    return actions


def _check_conditions(conditions: Any) -> list[Any]:
    if not isinstance(conditions, list):
        raise BadRequest("Missing 'conditions'", Codes.BAD_JSON)
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            raise BadRequest("Condition without 'kind'", Codes.BAD_JSON)
    return conditions


def _format_user_rule(stored: StoredRule) -> Rule:
    rule: Rule = {
        "rule_id": stored.rule_id,
        "default": False,
        "enabled": True if stored.enabled is None else stored.enabled,
        "actions": stored.actions or [],
    }
    if stored.kind in ("override", "underride"):
        rule["conditions"] = stored.conditions or []
    elif stored.kind == "content":
        rule["pattern"] = stored.pattern or ""
    return rule


def _apply_override(rule: Rule, stored: StoredRule | None) -> Rule:
    if stored is not None:
        if stored.enabled is not None:
            rule["enabled"] = stored.enabled
        if stored.actions is not None:
            rule["actions"] = stored.actions
    return rule


def build_ruleset(user_id: str, stored: list[StoredRule]) -> dict[str, list[Rule]]:
    """The effective ruleset: the defaults with the user's overrides, and the user's rules."""
    overrides = {(r.kind, r.rule_id): r for r in stored if r.rule_id.startswith(".")}
    own: dict[str, list[Rule]] = {kind: [] for kind in KINDS}
    for rule in stored:
        if not rule.rule_id.startswith(".") and rule.kind in own:
            own[rule.kind].append(_format_user_rule(rule))
    ruleset: dict[str, list[Rule]] = {}
    for kind, defaults in default_rules(user_id).items():
        merged = [_apply_override(d, overrides.get((kind, d["rule_id"]))) for d in defaults]
        first = [r for r in merged if r["rule_id"] == MASTER_RULE_ID]
        rest = [r for r in merged if r["rule_id"] != MASTER_RULE_ID]
        ruleset[kind] = first + own[kind] + rest
    return ruleset


@lru_cache(maxsize=65536)
def _cached_defaults(user_id: str) -> dict[str, list[Rule]]:
    return build_ruleset(user_id, [])


class PushRulesService:
    def __init__(self, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier

    async def get_ruleset(self, user_id: str) -> dict[str, list[Rule]]:
        """The user's effective ``global`` ruleset."""
        return build_ruleset(user_id, await self.store.push_rules.get_rules(user_id))

    async def get_rulesets(
        self, user_ids: list[str], *, own: set[str] | None = None
    ) -> tuple[dict[str, dict[str, list[Rule]]], set[str]]:
        """The effective rulesets of many users (read-only: a user without rules of their own
        gets a shared, cached copy of the defaults) and who has rules of their own; one read
        for the latter, unless the caller knows (``own``: a superset is fine)."""
        if own is None:
            own = await self.store.push_rules.users_with_rules(user_ids)
        else:
            own = own.intersection(user_ids)
        rulesets: dict[str, dict[str, list[Rule]]] = {}
        for user_id in user_ids:
            rulesets[user_id] = (
                await self.get_ruleset(user_id) if user_id in own else _cached_defaults(user_id)
            )
        return rulesets, own

    async def get_push_rules_content(self, user_id: str) -> dict[str, Any]:
        """The ``m.push_rules`` account-data content / ``GET /pushrules/`` body."""
        return {"global": await self.get_ruleset(user_id)}

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> Rule:
        check_kind(kind)
        for rule in (await self.get_ruleset(user_id))[kind]:
            if rule["rule_id"] == rule_id:
                return rule
        raise NotFound("Unknown rule")

    async def get_attribute(
        self, user_id: str, kind: str, rule_id: str, attribute: str
    ) -> dict[str, Any]:
        rule = await self.get_rule(user_id, kind, rule_id)
        if attribute not in ATTRIBUTES:
            raise BadRequest("Unrecognized request", Codes.UNRECOGNIZED)
        return {attribute: rule[attribute]}

    async def put_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        body: dict[str, Any],
        *,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        check_kind(kind)
        if "/" in rule_id or "\\" in rule_id:
            raise BadRequest("rule_id may not contain slashes", Codes.INVALID_PARAM)
        if rule_id.startswith("."):
            raise BadRequest("cannot add new rule_ids that start with '.'", Codes.INVALID_PARAM)
        conditions: list[Any] | None = None
        pattern: str | None = None
        if kind in ("override", "underride"):
            conditions = _check_conditions(body.get("conditions"))
        elif kind == "content":
            pattern = body.get("pattern")
            if not isinstance(pattern, str):
                raise BadRequest("Content rule missing 'pattern'", Codes.BAD_JSON)
            conditions = [{"kind": "event_match", "key": "content.body", "pattern": pattern}]
        elif kind == "room":
            conditions = [{"kind": "event_match", "key": "room_id", "pattern": rule_id}]
        else:
            conditions = [{"kind": "event_match", "key": "user_id", "pattern": rule_id}]
        if "actions" not in body:
            raise BadRequest("No actions found", Codes.BAD_JSON)
        actions = check_actions(body["actions"])
        try:
            await self.store.push_rules.add_rule(
                user_id,
                kind,
                rule_id,
                conditions=conditions,
                pattern=pattern,
                actions=actions,
                before=before,
                after=after,
            )
        except UnknownAnchorError as e:
            raise BadRequest(f"before/after rule not found: {e.args[0]}", Codes.UNKNOWN) from None
        self.notifier.notify(user_ids=[user_id])

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        # Server-default rules cannot be deleted: like Synapse, they are simply not found.
        if rule_id.startswith(".") or not await self.store.push_rules.delete_rule(
            user_id, kind, rule_id
        ):
            raise NotFound("Unknown rule")
        self.notifier.notify(user_ids=[user_id])

    async def set_attribute(
        self, user_id: str, kind: str, rule_id: str, attribute: str, body: dict[str, Any]
    ) -> None:
        await self.get_rule(user_id, kind, rule_id)  # 404 for an unknown rule
        if attribute == "enabled":
            enabled = body.get("enabled")
            if not isinstance(enabled, bool):
                raise BadRequest("Value for 'enabled' must be boolean", Codes.BAD_JSON)
            await self.store.push_rules.set_attribute(user_id, kind, rule_id, enabled=enabled)
        elif attribute == "actions":
            actions = check_actions(body.get("actions"))
            await self.store.push_rules.set_attribute(user_id, kind, rule_id, actions=actions)
        else:
            raise BadRequest("Unrecognized request", Codes.UNRECOGNIZED)
        self.notifier.notify(user_ids=[user_id])
