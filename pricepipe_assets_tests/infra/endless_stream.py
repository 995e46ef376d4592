"""An ASGI app whose one response never ends, like the chart page's live stream.

The real stream needs a symbol with data in Cassandra; this stands in for it where a test only
needs uvicorn to hold an open response while it is asked to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


async def endless(request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        while True:
            yield "event: tick\ndata: {}\n\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/stream", endless)])
