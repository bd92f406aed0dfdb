"""The API documentation pages work offline: every asset they load is served by the
server itself, not by a CDN."""

from __future__ import annotations

import re

import pytest

from tests.server.support import client_for

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
KINDS = {"js": "javascript", "css": "text/css", "png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(ctx, page):
    async with client_for(ctx) as client:
        html = await client.get(page)
        assert html.status_code == 200
        assert "://" not in html.text, "an absolute URL: the page would need the network"
        assets = ASSET.findall(html.text)
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            served = await client.get(asset)
            assert served.status_code == 200, asset
            kind = KINDS[asset.rsplit(".", 1)[-1]]
            assert kind in served.headers["content-type"], (asset, served.headers)
            assert len(served.content) > 1000, asset
