"""The inventory API: a catalogue of products and their stock, as JSON."""

from __future__ import annotations

import json

from django.http import Http404, HttpRequest, HttpResponseNotAllowed, JsonResponse

STOCK = {
    "apple": {"sku": "apple", "name": "Apple", "stock": 12},
    "pear": {"sku": "pear", "name": "Pear", "stock": 0},
    "plum": {"sku": "plum", "name": "Plum", "stock": 5},
}


def products(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"products": sorted(STOCK)})


def product(request: HttpRequest, sku: str) -> JsonResponse | HttpResponseNotAllowed:
    if sku not in STOCK:
        raise Http404(sku)
    if request.method == "GET":
        return JsonResponse(STOCK[sku])
    if request.method == "POST":  # a stock check for a quantity: {"quantity": 3}
        quantity = int(json.loads(request.body or b"{}").get("quantity", 1))
        return JsonResponse({"sku": sku, "available": STOCK[sku]["stock"] >= quantity})
    return HttpResponseNotAllowed(["GET", "POST"])
