"""``openeo-airflow products ...``: recurring products through the openEO API (``/products``).

It talks HTTP rather than to the database: the API is where a product is validated, where its
owner is authenticated, and where pause/backfill/delete reach Airflow's REST API. Going to the
database directly would skip all three (and need the database's credentials on the laptop).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://localhost:8080/openeo/1.2"


def add_parser(commands: Any) -> None:
    products = commands.add_parser("products", help="register and manage recurring products")
    products.add_argument(
        "--url",
        default=os.environ.get("OPENEO_AIRFLOW_URL", DEFAULT_URL),
        help=f"openEO API root (default $OPENEO_AIRFLOW_URL or {DEFAULT_URL})",
    )
    products.add_argument(
        "--user",
        default=os.environ.get("OPENEO_AIRFLOW_CLI_USER", ""),
        metavar="NAME:PASSWORD",
        help="basic-auth user (default $OPENEO_AIRFLOW_CLI_USER)",
    )
    actions = products.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="your products")
    create = actions.add_parser("create", help="register a product from a JSON file ('-': stdin)")
    create.add_argument("file")
    for name, text in (
        ("get", "show a product"),
        ("pause", "stop scheduling new runs"),
        ("resume", "schedule runs again"),
        ("delete", "remove the product's DAG (its published collection stays)"),
        ("items", "the STAC items published so far"),
    ):
        actions.add_parser(name, help=text).add_argument("id")
    backfill = actions.add_parser("backfill", help="run the intervals starting in [start, end)")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, help="ISO date or date-time")
    backfill.add_argument("--end", required=True, help="ISO date or date-time (excluded)")
    backfill.add_argument("--reprocess", choices=("none", "failed", "completed"), default="failed")


def run(args: argparse.Namespace, transport: httpx.BaseTransport | None = None) -> int:
    """Do the action; prints the result as JSON (the id for ``create``); 1 on an API error."""
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=60, transport=transport) as client:
        client.headers.update(_login(client, args.user))
        response = _request(client, args)
    if response.status_code >= 400:
        try:
            error = response.json()
            print(f"error: [{error['code']}] {error['message']}", file=sys.stderr)
        except (ValueError, KeyError):
            print(f"error: HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
        return 1
    if response.status_code == 201:
        print(response.headers.get("OpenEO-Identifier", ""))
    elif response.content:
        print(json.dumps(response.json(), indent=2))
    return 0


def _request(client: httpx.Client, args: argparse.Namespace) -> httpx.Response:
    action, product = args.action, getattr(args, "id", None)
    if action == "list":
        return client.get("/products")
    if action == "create":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        return client.post("/products", json=json.loads(text))
    if action == "get":
        return client.get(f"/products/{product}")
    if action in ("pause", "resume"):
        return client.post(f"/products/{product}/{action}")
    if action == "delete":
        return client.delete(f"/products/{product}")
    if action == "items":
        return client.get(f"/products/{product}/collection/items")
    body = {"start": args.start, "end": args.end, "reprocess": args.reprocess}
    return client.post(f"/products/{product}/backfill", json=body)


def _login(client: httpx.Client, user: str) -> dict[str, str]:
    name, sep, password = user.partition(":")
    if not sep:
        raise SystemExit("error: give --user NAME:PASSWORD (or $OPENEO_AIRFLOW_CLI_USER)")
    response = client.get("/credentials/basic", auth=(name, password))
    if response.status_code != 200:
        raise SystemExit(f"error: login failed: {response.text[:300]}")
    return {"Authorization": f"Bearer basic//{response.json()['access_token']}"}
