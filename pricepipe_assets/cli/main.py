"""The ``pricepipe`` command: the local platform, its servers and its configuration."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from pricepipe_assets.cli.api_keys import add_api_key_command
from pricepipe_assets.settings import Settings, SettingsError


def _infra(args: argparse.Namespace, settings: Settings) -> int:
    from infra.local import cluster, launcher, secure

    if args.cluster and args.secure:
        raise ValueError("choose --cluster or --secure, not both")
    if args.cluster:
        layout, catalog = cluster.layout(settings), cluster.NODES
    elif args.secure:
        layout = secure.layout(settings)
        if args.action == "up":
            cluster.check_addresses([secure.HOST])
            secure.prepare(layout)  # certificates and passwords first: the servers are configured with them
        catalog = secure.catalog(layout)
    else:
        layout, catalog = launcher.Layout(settings.state_dir, settings.cache_dir), launcher.SERVERS
    names = args.servers or ["all"]
    if args.action == "up":
        if args.cluster:
            cluster.check_addresses()
        launcher.up(names, layout, catalog=catalog)
        if args.cluster:
            print("[infra] point pricepipe at the cluster with: "
                  + " ".join(f"{name}={value}" for name, value in cluster.environment().items()))
        if args.secure:
            print(f"[infra] point pricepipe at the secure servers with: {secure.exports(layout)}")
        return 0
    if args.action == "down":
        launcher.down(names, layout, catalog=catalog)
        return 0
    return 0 if launcher.status(names, layout, catalog=catalog) else 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.cli.supervisor import run

    return run(settings)


def _dagster_instance(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from pricepipe_assets.cli.instance import dagster_home, prepare_instance

    home, note = dagster_home(settings, os.environ)
    print(note)
    prepare_instance({**os.environ, "DAGSTER_HOME": str(home)}, Path(sys.executable).parent,
                     settings.state_dir / "logs" / "dagster-instance.log")
    print(f"[instance] storage ready: {'PostgreSQL' if settings.dagster_postgres_url else 'SQLite'}")
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _feed(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.sources.feed import ReplayOptions, run_feed

    if args.source == "auto":
        from pricepipe_assets.sources.demo import run_demo_feed

        return run_demo_feed(settings)

    replay = None
    if args.source == "replay":
        if args.start is None:
            raise SystemExit("pricepipe feed --source replay needs --start (and optionally --end)")
        replay = ReplayOptions(start=args.start, end=args.end or args.start, speed=args.speed or None,
                               symbols=tuple(args.symbols or settings.symbols), trades_symbol=args.trades,
                               trades_market=args.trades_market, origin=args.origin)
    if args.history and args.source != "binance":
        raise SystemExit("pricepipe feed --history goes with --source binance")
    return run_feed(args.source, settings, replay, history=args.history)


def _stream(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.cli import stream

    if args.action == "reset":
        from pricepipe_assets.kafka.client import kafka_cluster

        if not args.assets:
            raise ValueError("pricepipe stream reset needs --assets, the live tables to write again")

        to = args.to if args.to in ("earliest", "latest") else _time(args.to)
        for asset, partitions in stream.reset(kafka_cluster(settings), args.assets, to).items():
            print(f"[stream] {asset}: {partitions} partition(s) moved to {args.to}")
        return 0
    return stream.run(settings)


def _time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--to wants earliest, latest or an ISO time such as 2024-01-01T00:00, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.sources.backfill import backfill

    return backfill(settings, args.symbol, args.start, args.end, source=args.source, interval=args.interval,
                    exchange=args.exchange)


def _import_candles(args: argparse.Namespace, settings: Settings) -> int:
    from pricepipe_assets.kafka.client import kafka_cluster
    from pricepipe_assets.sources.candle_files import import_candles

    result = import_candles(kafka_cluster(settings).publisher(), args.file, args.symbol, args.interval,
                            exchange=args.exchange, progress=True)
    print(f"{args.file}: {result.rows:,} rows, {result.published:,} candles published, "
          f"{result.dead_letters:,} rows to deadletter")
    return 0


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
                       help="kafka, cassandra, hdfs or all (default: all); with --cluster also one node, "
                       "e.g. kafka-2 or cassandra-3")
    infra.add_argument("--cluster", action="store_true",
                       help="the local cluster instead: three Kafka brokers and three Cassandra nodes on "
                       "127.0.0.11-13, a Spark master and worker (spark) and PostgreSQL for the Dagster instance "
                       "(postgres), state under <state dir>/cluster")
    infra.add_argument("--secure", action="store_true",
                       help="the secure servers instead: Kafka with SASL_SSL (SCRAM-SHA-512, PLAIN) and Cassandra "
                       "with TLS and password logins on 127.0.0.21, from a private CA and passwords generated under "
                       "<state dir>/secure")
    infra.set_defaults(handler=_infra)

    run = commands.add_parser("run", help="run the local platform (servers, Dagster, API) until Ctrl-C")
    run.set_defaults(handler=_run)

    instance = commands.add_parser(
        "dagster-instance", help="write the project's dagster.yaml into the Dagster home and create or upgrade its "
        "storage (what `pricepipe run` does first; run it before Dagster processes started otherwise)")
    instance.set_defaults(handler=_dagster_instance)

    feed = commands.add_parser("feed", help="stream a source into Kafka until Ctrl-C, with a status line")
    feed.add_argument("--source", required=True, choices=("auto", "binance", "bitmex", "replay", "ccxt"),
                      help="auto: Binance and BitMEX live when Binance answers, else the offline demo replay "
                      "(PRICEPIPE_REPLAY_*), as `pricepipe run` does; ccxt: the trades and books of "
                      "PRICEPIPE_CCXT_MARKETS through CCXT")
    feed.add_argument("--from", dest="origin", choices=("dumps", "lake"), default="dumps",
                      help="replay: read history from the Binance dumps (PRICEPIPE_BINANCE_DUMPS_URL) or the lake")
    feed.add_argument("--start", type=_date, help="replay: first day (YYYY-MM-DD)")
    feed.add_argument("--end", type=_date, help="replay: last day (default: --start)")
    feed.add_argument("--speed", type=float, default=60.0,
                      help="replay: market time per wall time (60 = a minute a second; 0 = as fast as possible)")
    feed.add_argument("--symbols", nargs="+", help="replay: symbols of the 1m candles (default: PRICEPIPE_SYMBOLS)")
    feed.add_argument("--trades", metavar="SYMBOL", help="replay: also replay this symbol's trades")
    feed.add_argument("--trades-market", default="futures/cm", help="replay: market of --trades (spot, futures/um, futures/cm)")
    feed.add_argument("--history", action="store_true",
                      help="binance: first fetch the history the lake lacks (PRICEPIPE_HISTORY_DAILY_YEARS of daily "
                      "candles, PRICEPIPE_HISTORY_DAYS of 1m), as `pricepipe run` does online")
    feed.set_defaults(handler=_feed)

    stream = commands.add_parser("stream", help="write the live tables from Kafka as records arrive, until Ctrl-C "
                                 "(what `pricepipe run` starts); `reset` moves tables back to write a range again")
    stream.add_argument("action", nargs="?", choices=("run", "reset"), default="run")
    stream.add_argument("--assets", nargs="+", default=[], metavar="ASSET",
                        help="reset: the live tables to write again (e.g. candles_live); stop the workers first")
    stream.add_argument("--to", default="earliest",
                        help="reset: earliest, latest, or an ISO time (UTC unless it says otherwise)")
    stream.set_defaults(handler=_stream)

    backfill = commands.add_parser("backfill", help="publish a symbol's history for a date range into Kafka")
    backfill.add_argument("--symbol", required=True)
    backfill.add_argument("--start", required=True, type=_date)
    backfill.add_argument("--end", required=True, type=_date)
    backfill.add_argument("--source", choices=("dumps", "rest", "ccxt"), default="dumps",
                          help="dumps and rest: Binance's; ccxt: the venue --exchange names, through CCXT")
    backfill.add_argument("--exchange", help="ccxt: the CCXT exchange id, such as kraken or okx")
    backfill.add_argument("--interval", choices=("1m", "1h", "1d"), default="1m")
    backfill.set_defaults(handler=_backfill)

    candles = commands.add_parser("import-candles", help="publish the candles of an OHLCV CSV file into Kafka")
    candles.add_argument("file", type=Path, help="Binance's 12 kline columns (header optional) or timestamp,open,high,"
                         "low,close,volume")
    candles.add_argument("--symbol", required=True)
    candles.add_argument("--interval", choices=("1m", "1h", "1d"), required=True)
    candles.add_argument("--exchange", default="binance", help="the venue the candles are from")
    candles.set_defaults(handler=_import_candles)

    config = commands.add_parser("config", help="print the effective settings (secrets masked)")
    config.add_argument("--markdown", action="store_true", help="print the table of variables and defaults instead")
    config.set_defaults(handler=_config)
    add_api_key_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.handler(args, settings)
        return code
    except SettingsError as error:
        print(f"pricepipe: configuration error: {error}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, OSError) as error:
        print(f"pricepipe: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
