"""``/pushrules/``: read the merged ruleset, add/remove the user's rules, toggle and re-action
any rule. Only the ``global`` scope exists (device scopes left the spec)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.http.appkeys import PUSH_RULES
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.push.rules import check_kind


def _scope(request: web.Request) -> None:
    if request.match_info.get("scope", "global") != "global":
        raise BadRequest("Unrecognized request", Codes.UNRECOGNIZED)


async def get_all(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    return json_response(await push_rules.get_push_rules_content(requester.user_id))


async def get_scope(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    return json_response(await push_rules.get_ruleset(requester.user_id))


async def get_kind(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    kind = request.match_info["kind"]
    ruleset = await push_rules.get_ruleset(requester.user_id)
    if kind not in ruleset:
        raise NotFound("Unknown rule kind", Codes.UNRECOGNIZED)
    return json_response(ruleset[kind])


async def get_rule(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    rule = await push_rules.get_rule(
        requester.user_id, request.match_info["kind"], request.match_info["rule_id"]
    )
    return json_response(rule)


async def put_rule(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    check_kind(request.match_info["kind"])
    body = await read_json_object(request)
    await push_rules.put_rule(
        requester.user_id,
        request.match_info["kind"],
        request.match_info["rule_id"],
        body,
        before=request.query.get("before") or None,
        after=request.query.get("after") or None,
    )
    return json_response({})


async def delete_rule(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    await push_rules.delete_rule(
        requester.user_id, request.match_info["kind"], request.match_info["rule_id"]
    )
    return json_response({})


async def get_attribute(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    body = await push_rules.get_attribute(
        requester.user_id,
        request.match_info["kind"],
        request.match_info["rule_id"],
        request.match_info["attr"],
    )
    return json_response(body)


async def put_attribute(request: web.Request) -> web.Response:
    push_rules = request.app[PUSH_RULES]
    requester = await get_requester(request)
    _scope(request)
    body = await read_json_object(request)
    await push_rules.set_attribute(
        requester.user_id,
        request.match_info["kind"],
        request.match_info["rule_id"],
        request.match_info["attr"],
        body,
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/pushrules/", get_all)
    add_client_route(router, "GET", "/pushrules", get_all)
    add_client_route(router, "GET", "/pushrules/{scope}/", get_scope)
    add_client_route(router, "GET", "/pushrules/{scope}/{kind}/", get_kind)
    rule = "/pushrules/{scope}/{kind}/{rule_id}"
    add_client_route(router, "GET", rule, get_rule)
    add_client_route(router, "PUT", rule, put_rule)
    add_client_route(router, "DELETE", rule, delete_rule)
    add_client_route(router, "GET", rule + "/{attr}", get_attribute)
    add_client_route(router, "PUT", rule + "/{attr}", put_attribute)
