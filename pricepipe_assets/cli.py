"""The ``pricepipe`` command: the local platform, its servers and its configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pricepipe_assets.settings import Settings, SettingsError



def _infra(args: argparse.Namespace, settings: Settings) -> int:
    from infra.local import launcher

    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    names = args.servers or ["all"]
    if args.action == "up":
        launcher.up(names, layout)
        return 0
    if args.action == "down":
        launcher.down(names, layout)
        return 0
    return 0 if launcher.status(names, layout) else 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.supervisor import run

    return run(settings)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print("| variable | default | meaning |\n| --- | --- | --- |")
        for name, default, doc in Settings.documentation():
            print(f"| `{name}` | {f'`{default}`' if default else ''} | {doc} |")
        return 0
    for name, value in settings.redacted().items():
        print(f"{name}={value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricepipe", description="Crypto market data and forecasts on Dagster.")
    commands = parser.add_subparsers(dest="command", required=True)

    infra = commands.add_parser("infra", help="start, stop or inspect local Kafka, Cassandra and HDFS")
    infra.add_argument("action", choices=("up", "down", "status"))
    infra.add_argument("servers", nargs="*", metavar="SERVER",
                       help="kafka, cassandra, hdfs or all (default: all)")
    infra.set_defaults(handler=_infra)

    run = commands.add_parser("run", help="run the local platform (servers, Dagster, API) until Ctrl-C")
    run.set_defaults(handler=_run)

    config = commands.add_parser("config", help="print the effective settings (secrets masked)")
    config.add_argument("--markdown", action="store_true", help="print the table of variables and defaults instead")
    config.set_defaults(handler=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.handler(args, settings)
    except SettingsError as error:
        print(f"pricepipe: configuration error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"pricepipe: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
