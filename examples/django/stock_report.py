"""A second service that calls the inventory service: it checks every product at once.

    python examples/django/stock_report.py mux://127.0.0.1:3031

All the requests go out concurrently over one multiplexed connection (AsyncClient, asyncio
or trio), each with the same deadline.
"""

from __future__ import annotations

import asyncio
import sys

from muxwsgi.client import AsyncClient


async def report(url: str) -> list[str]:
    async with AsyncClient(url, timeout=5.0) as inventory:
        skus = (await inventory.get("/products")).json()["products"]
        responses = await asyncio.gather(*(inventory.get(f"/products/{sku}") for sku in skus))
    lines = []
    for response in responses:
        product = response.json()
        lines.append(f"{product['name']}: {product['stock']}")
    return lines


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "mux://127.0.0.1:3031"
    print("\n".join(asyncio.run(report(url))))
