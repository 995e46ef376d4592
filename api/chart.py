"""The chart page at ``GET /`` and the files it loads.

The page is plain static HTML/JS/CSS that reads the JSON API from the browser, so it needs no
template engine and no build step. Its charting library is the ``plotly.min.js`` bundled in the
installed ``plotly`` pip package: the version is pinned in pyproject.toml like every other
dependency, and no copy of a third-party library lives in the repository.

The page and its files are public even when the API wants a key: the HTML, the page's own script
and style, the login page and plotly.min.js (a public library) hold no data, and a browser must
load them before it can log in. Everything the chart shows comes from the JSON endpoints and the
live stream, which want a key with their scope (the session cookie of ``/login``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.auth import PUBLIC, Access

STATIC_DIR = Path(__file__).with_name("static")
ASSETS_PREFIX = "/static/chart"


def plotly_js_path() -> Path:
    """Where the installed ``plotly`` package keeps its bundled ``plotly.min.js``.

    Resolved through importlib.resources so it follows whichever environment runs the API; fails
    at start-up, naming the file, rather than serving a page whose chart can never draw.
    """
    resource = files("plotly").joinpath("package_data", "plotly.min.js")
    path = Path(str(resource))
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js is missing from the installed plotly package (looked at {path})")
    return path


async def chart_page(request: Request) -> FileResponse:
    """The chart page itself; everything it shows comes from the JSON endpoints."""
    return FileResponse(STATIC_DIR / "chart.html", media_type="text/html")


def _plotly_js_route() -> Route:
    """One route for the one library file, so the rest of the plotly package data stays unserved."""
    path = plotly_js_path()

    async def plotly_js(request: Request) -> FileResponse:
        return FileResponse(path, media_type="text/javascript")

    return Route(f"{ASSETS_PREFIX}/plotly.min.js", plotly_js)


ROUTES: tuple[Access, ...] = (
    (Route("/", chart_page), PUBLIC),
    (_plotly_js_route(), PUBLIC),
    (Mount(ASSETS_PREFIX, app=StaticFiles(directory=STATIC_DIR), name="chart-assets"), PUBLIC),
)
