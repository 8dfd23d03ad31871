"""``GET /_synapse/metrics`` (the ``metrics`` listener resource) and the middleware that
measures every request on every listener.

Requests are labelled by route pattern (``/_matrix/client/{version}/rooms/{room_id}/send/...``),
never by raw path, so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from homeserver.http.appkeys import METRICS
from homeserver.metrics import http_method_label

#: The servlet label of requests that matched no route (404, or 405 on a known path).
UNMATCHED = "unmatched"


async def metrics(request: web.Request) -> web.Response:
    server_metrics = request.app[METRICS]
    await server_metrics.refresh()
    body, content_type = server_metrics.render(request.headers.get("Accept"))
    response = web.Response(body=body)
    # Set as a header: aiohttp's content_type= refuses parameters (version, charset).
    response.headers["Content-Type"] = content_type
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_synapse/metrics", metrics)


def servlet_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request, time it and count its response by status code. Sits outside the
    error middleware, so the status is the one the client gets."""
    hs_metrics = request.app[METRICS]
    method = http_method_label(request.method)
    servlet = servlet_label(request)
    hs_metrics.http_requests.labels(method, servlet).inc()
    in_flight = hs_metrics.http_in_flight.labels(method, servlet)
    in_flight.inc()
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        in_flight.dec()
        code = str(status)
        hs_metrics.http_responses.labels(method, code).inc()
        hs_metrics.http_response_time.labels(method, servlet, code).observe(
            time.perf_counter() - start
        )
