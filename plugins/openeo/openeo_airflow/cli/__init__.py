"""The ``openeo-airflow`` command: ``up`` starts the local stack, ``demo`` runs the demo job,
``products`` manages recurring products through the openEO API."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from openeo_airflow.cli import products
from openeo_airflow.cli.stack import ADMIN_USER, LocalStack, StackConfig, admin_password

USERS_ENV = "OPENEO_AIRFLOW_USERS"


def parse_users(values: list[str]) -> dict[str, str]:
    """``NAME:PASSWORD`` pairs from the options and from ``OPENEO_AIRFLOW_USERS`` (a,b,...)."""
    pairs = [v for v in os.environ.get(USERS_ENV, "").split(",") if v.strip()] + values
    users = {}
    for pair in pairs:
        name, sep, password = pair.strip().partition(":")
        if not sep or not name or not password:
            raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {pair!r}")
        users[name] = password
    return users


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="api-server port (default 8080)")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("OPENEO_AIRFLOW_HOME", "~/.openeo-airflow")),
        help="folder for all state: databases, logs, results (default ~/.openeo-airflow)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help=f"a local basic-auth user (repeatable; also ${USERS_ENV}=a:pw,b:pw)",
    )
    parser.add_argument("--collections", type=Path, help="collections YAML file to serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openeo-airflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the local stack in the foreground")
    _common(up)
    demo = commands.add_parser("demo", help="start the stack and run the NDVI demo job")
    _common(demo)
    demo.add_argument(
        "--exit", action="store_true", help="stop the stack after the demo instead of keeping it up"
    )
    demo.add_argument("--output", type=Path, help="where to write the results")
    products.add_parser(commands)
    return parser


def stack_config(args: argparse.Namespace) -> StackConfig:
    home = args.home.expanduser().resolve()
    return StackConfig(
        home=home,
        port=args.port,
        users=parse_users(args.user),
        collections=args.collections,
    )


def print_urls(config: StackConfig) -> None:
    print(f"openEO API:  {config.openeo_url}/")
    print(
        f"Airflow UI:  {config.base_url}/  (login: {ADMIN_USER} / {admin_password(config)})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "products":
        return products.run(args)
    config = stack_config(args)
    if args.command == "demo":
        from openeo_airflow.cli.demo import DEMO_USER

        config.users.setdefault(*DEMO_USER)
    if args.collections is None:
        from openeo_airflow.demo.archive import generate_demo_archive

        generate_demo_archive(config.home / "demo-archive")
    stack = LocalStack(config)
    # A SIGTERM (e.g. from a test harness) stops the children like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        stack.wait_ready()
        print_urls(config)
        if args.command == "demo":
            from openeo_airflow.cli.demo import run_demo

            run_demo(config, args.output)
            if args.exit:
                return 0
            print("The stack keeps running; press Ctrl-C to stop it.", flush=True)
        return stack.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
