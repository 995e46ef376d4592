"""pricepipe configuration: one immutable settings object read from ``PRICEPIPE_*`` variables.

Every address, credential and tunable lives here so that pointing pricepipe at real clusters is
a matter of environment variables, never of code. Values are parsed eagerly and a bad value
raises :class:`SettingsError` naming the variable, so a typo fails at start-up with a sentence
instead of deep inside a client library.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pricepipe_assets.setting_values import (
    parse_bool,
    parse_choice,
    parse_consistency,
    parse_cron,
    parse_date,
    parse_identifier,
    parse_int,
    parse_lake_uri,
    parse_list,
    parse_postgres_url,
    parse_replication,
    parse_share,
    parse_speed,
    parse_symbols,
    parse_trades_replay,
    parse_url,
    replication_factor,
)

PREFIX = "PRICEPIPE_"


class SettingsError(ValueError):
    """A ``PRICEPIPE_*`` variable holds a value pricepipe cannot use."""


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "pricepipe"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pricepipe"


def _path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def _optional_path(text: str) -> Path | None:
    """Empty means none: ``Path("")`` would be the working directory."""
    return _path(text) if text.strip() else None


def _setting(default: Any, parse: Callable[[str], Any], doc: str, *, secret: bool = False, shown: str = "") -> Any:
    """A settings field; ``shown`` is the default as a user would type it, when that differs from the parsed value."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "secret": secret, "shown": shown})


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything configurable in pricepipe; field ``x`` is read from ``PRICEPIPE_X``."""

    kafka_bootstrap: str = _setting("127.0.0.1:9092", str.strip, "Kafka bootstrap servers, comma-separated host:port")
    kafka_security_protocol: str = _setting("PLAINTEXT", str.strip, "Kafka security.protocol (PLAINTEXT, SASL_SSL, ...)")
    kafka_sasl_mechanism: str = _setting("", str.strip, "Kafka sasl.mechanism when SASL is used (PLAIN, SCRAM-SHA-512, ...)")
    kafka_username: str = _setting("", str.strip, "Kafka SASL user name")
    kafka_password: str = _setting("", str, "Kafka SASL password", secret=True)
    kafka_ssl_ca_file: Path | None = _setting(
        None, _optional_path, "PEM file of the CA that signed the brokers' certificates, for SSL and SASL_SSL "
        "(empty: the system's CAs)")
    kafka_ssl_cert_file: Path | None = _setting(None, _optional_path, "client certificate (PEM), for brokers that "
                                                "require one (mutual TLS)")
    kafka_ssl_key_file: Path | None = _setting(None, _optional_path, "private key (PEM) of the client certificate")
    kafka_ssl_check_hostname: bool = _setting(True, parse_bool, "refuse a broker whose certificate does not name "
                                              "the host connected to")
    topic_prefix: str = _setting("", str.strip, "prefix of every topic name (e.g. 'staging.'), for shared clusters")
    kafka_topic_partitions: int = _setting(
        6, lambda s: parse_int(s, minimum=1), "partitions of each topic pricepipe creates: the most stream workers "
        "that share a topic's records (each symbol's records stay in one partition, in order)")
    kafka_replication_factor: int = _setting(1, lambda s: parse_int(s, minimum=1), "replication factor of each topic pricepipe creates")
    kafka_min_insync_replicas: int = _setting(
        None, lambda s: parse_int(s, minimum=1), "min.insync.replicas of each topic pricepipe creates: replicas that "
        "must have a message before an acks=all write succeeds (e.g. 2 of 3, so one broker may be down; default: "
        "the broker's)")
    kafka_retention_hours: int = _setting(168, lambda s: parse_int(s, minimum=1), "retention of each topic pricepipe creates")
    cassandra_hosts: tuple[str, ...] = _setting(("127.0.0.1",), parse_list, "Cassandra contact points, comma-separated")
    cassandra_port: int = _setting(9042, lambda s: parse_int(s, minimum=1), "Cassandra native protocol port")
    cassandra_local_dc: str = _setting("", str.strip, "Cassandra local datacenter for load balancing (empty: driver default)")
    cassandra_username: str = _setting("", str.strip, "Cassandra user (empty: no authentication)")
    cassandra_password: str = _setting("", str, "Cassandra password", secret=True)
    cassandra_tls: bool = _setting(False, parse_bool, "connect to Cassandra over TLS (on whenever a CA file is set)")
    cassandra_ssl_ca_file: Path | None = _setting(
        None, _optional_path, "PEM file of the CA that signed the Cassandra nodes' certificates (empty: the system's "
        "CAs)")
    cassandra_ssl_cert_file: Path | None = _setting(None, _optional_path, "client certificate (PEM), for nodes "
                                                    "that require one (require_client_auth)")
    cassandra_ssl_key_file: Path | None = _setting(None, _optional_path, "private key (PEM) of the client "
                                                   "certificate")
    cassandra_ssl_check_hostname: bool = _setting(True, parse_bool, "refuse a node whose certificate does not name "
                                                  "the address connected to")
    allow_plaintext_passwords: bool = _setting(
        False, parse_bool, "allow a Kafka or Cassandra password over a connection without TLS (anyone on the path "
        "reads it); without it such settings are refused at start")
    keyspace: str = _setting("pricepipe", parse_identifier, "Cassandra keyspace")
    cassandra_replication: str = _setting(
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        parse_replication,
        "keyspace replication: SimpleStrategy:N or NetworkTopologyStrategy:dc1=N,dc2=M",
        shown="SimpleStrategy:1",
    )
    cassandra_consistency: str = _setting(
        "", parse_consistency, "consistency level of pricepipe's Cassandra reads and writes (default: LOCAL_QUORUM "
        "when the keyspace's replication factor is 3 or more, so one node of three may be down, else LOCAL_ONE)")
    lake_uri: str = _setting("", parse_lake_uri, "data lake root: a folder, or webhdfs://host:port/path (default: <state dir>/lake)")
    hdfs_user: str = _setting("root", str.strip, "user name sent to HDFS")
    hdfs_rpc_port: int = _setting(8020, lambda s: parse_int(s, minimum=1), "NameNode RPC port, used by Spark (hdfs://)")
    spark_master: str = _setting("local[*]", str.strip, "Spark master URL")
    spark_driver_memory: str = _setting("1g", str.strip, "Spark driver memory")
    analytics_cron: str = _setting("*/30 * * * *", parse_cron, "when the analytics schedule rolls up history, "
                                   "retrains the models and republishes the forecast (cron, UTC)")
    model_baseline_margin: float = _setting(
        0.05, parse_share, "how much worse than the naive forecast (MAE ratio - 1) a model may be before its check "
        "fails and forecasts fall back to the naive one")
    daily_min_train_days: int = _setting(
        365, lambda s: parse_int(s, minimum=20), "days of history the daily model trains on before its first "
        "walk-forward origin")
    trade_candle_grace_s: int = _setting(
        10, lambda s: parse_int(s, minimum=0), "seconds a symbol's trades must have moved past the end of a minute "
        "before `trade_candles` publishes that minute's candle built from trades (a later, late trade amends it)")
    sensor_interval_s: int = _setting(5, lambda s: parse_int(s, minimum=1), "seconds between two ticks of a Kafka sensor")
    lake_batch_wait_s: int = _setting(
        60, lambda s: parse_int(s, minimum=0), "seconds new messages of a topic may wait for their lake run, unless a "
        "partition's pending messages complete a lake file (10,000 offsets) or the topic goes quiet sooner")
    stream_report_s: float = _setting(
        15.0, parse_speed, "seconds between two materializations the stream worker reports to Dagster for each live "
        "table it wrote (rows, offsets, lag, freshness of the interval)")
    symbols: tuple[str, ...] = _setting(("BTCUSDT", "ETHUSDT"), parse_symbols, "Binance symbols pricepipe follows")
    bitmex_symbols: tuple[str, ...] = _setting(
        ("XBTUSD", "ETHUSD", "SOLUSD", "DOGEUSD"), parse_symbols, "BitMEX symbols for trades and quotes"
    )
    book_depth: int = _setting(10, lambda s: parse_int(s, minimum=1), "levels per side of each order book published "
                               "on `orderbook` (the best ones)")
    book_publish_s: float = _setting(1.0, parse_share, "seconds between two order books published for one symbol "
                                     "(the newest book in between wins); 0 publishes every change")
    binance_dumps_url: str = _setting(
        "https://data.binance.vision", parse_url("https", "http", "file"), "Binance public dumps: base URL, mirror or file:// folder"
    )
    binance_rest_url: str = _setting("https://api.binance.com", parse_url("https", "http"), "Binance REST API base URL")
    binance_ws_url: str = _setting("wss://stream.binance.com:9443", parse_url("wss", "ws"), "Binance WebSocket base URL")
    bitmex_ws_url: str = _setting("wss://ws.bitmex.com/realtime", parse_url("wss", "ws"), "BitMEX WebSocket URL")
    ccxt_markets: tuple[str, ...] = _setting((), parse_list, "markets of `pricepipe feed --source ccxt` as "
                                             "EXCHANGE:SYMBOL (CCXT's exchange id and symbol, or the venue's id), "
                                             "comma-separated, e.g. kraken:BTC/USD,okx:BTC/USDT; unset: none")
    ccxt_urls: tuple[str, ...] = _setting((), parse_list, "CCXT endpoints replaced (proxies, local servers) as "
                                          "EXCHANGE.KEY=URL, KEY a dotted path in the exchange's `urls['api']`, "
                                          "comma-separated, e.g. binance.public=http://127.0.0.1:8080/api/v3")
    api_key: str = _setting("", str, "when set, the API requires a key: this one (every scope, no rate limit) or "
                            "one of `pricepipe api-key`; sent as the X-API-Key header, or as the session cookie "
                            "POST /login gives", secret=True)
    api_auth: bool = _setting(False, parse_bool, "require an API key of `pricepipe api-key` (Cassandra table "
                              "api_keys) on every route but /livez, /login and the chart page's files, even "
                              "without PRICEPIPE_API_KEY")
    api_cache_s: float = _setting(2.0, parse_share, "seconds the API may serve a cached answer for its hot endpoints "
                                  "(latest price, recent statistics); 0 disables the cache")
    api_stream_s: float = _setting(0.25, parse_speed, "seconds between two polls of a symbol's newest candle, price "
                                   "and book for the chart page's live stream: one poll (3 or 4 reads) per symbol per "
                                   "API worker, shared by all its streams, each sent an update when the answer changed")
    api_streams_max: int = _setting(200, lambda s: parse_int(s, minimum=1), "live streams (`/stream/{symbol}`) one "
                                    "API worker serves at once; one more gets 503 with Retry-After. Each holds a "
                                    "connection until its page closes (all streams of a symbol share one poll of "
                                    "Cassandra), so the cap bounds connections and memory, not reads")
    api_closed_cache_mb: int = _setting(64, lambda s: parse_int(s, minimum=0), "megabytes of encoded closed-day answers (1m "
                                          "candles of days that ended before the symbol's clock, which never change) "
                                          "each API worker keeps, least recently used dropped first; 0 keeps none")
    api_workers: int = _setting(None, lambda s: parse_int(s, minimum=1), "uvicorn worker processes of the API "
                                "under `pricepipe run` (default: the number of cores)")
    hot_days: int = _setting(7, lambda s: parse_int(s, minimum=1), "days of 1m candles, trades, minute statistics "
                             "and minute predictions kept in Cassandra before retention archives them to the lake")
    hot_days_aggregates: int = _setting(400, lambda s: parse_int(s, minimum=1), "days of hourly/daily candles, hour "
                                        "statistics, moving averages and forecasts kept in Cassandra")
    replay_start: dt.date = _setting(dt.date(2024, 1, 1), parse_date, "offline demo: first day of 1m candles "
                                     "replayed from PRICEPIPE_BINANCE_DUMPS_URL when no exchange answers")
    replay_history_days: int = _setting(60, lambda s: parse_int(s, minimum=0), "offline demo: days from "
                                        "PRICEPIPE_REPLAY_START published at once, as history, before the paced replay")
    replay_end: dt.date = _setting(dt.date(2024, 3, 31), parse_date, "offline demo: last day replayed")
    history_days: int = _setting(30, lambda s: parse_int(s, minimum=0), "live start: days of 1m candles fetched "
                                 "from the dumps and REST before the live stream (what the lake lacks); 0: none")
    history_daily_years: int = _setting(10, lambda s: parse_int(s, minimum=0), "live start: years of daily candles "
                                        "fetched from the monthly dumps and REST (since listing when shorter); 0: none")
    daily_history_dir: Path | None = _setting(
        None, _optional_path, "offline demo: a folder of daily OHLCV CSV files (`*<SYMBOL>_1d.csv`, either layout of "
        "`pricepipe import-candles`) whose candles before PRICEPIPE_REPLAY_START are published first, so the daily "
        "model has years to train on; unset or empty: none")
    replay_speed: float = _setting(60.0, parse_speed, "offline demo: market time per wall time of the paced replay")
    replay_trades: str = _setting("futures/cm/BTCUSD_PERP@2026-05-08", parse_trades_replay, "offline demo: "
                                  "aggTrades replayed beside the candles, <market>/<SYMBOL>@<day>[..<day>]; empty: none")
    dagster_postgres_url: str = _setting(
        "", parse_postgres_url, "the Dagster instance's PostgreSQL database (postgresql://user:password@host:5432/db), "
        "so several Dagster processes and machines share its runs and schedules; empty: SQLite files in the Dagster "
        "home", secret=True)
    dagster_bind_host: str = _setting("127.0.0.1", str.strip, "address `pricepipe run` binds the Dagster UI to; it has "
                                      "no login, so anything but loopback lets whoever reaches it launch runs")
    api_bind_host: str = _setting("127.0.0.1", str.strip, "address `pricepipe run` binds the API to (0.0.0.0 to "
                                  "serve other machines, with PRICEPIPE_API_KEY set)")
    dagster_port: int = _setting(3000, lambda s: parse_int(s, minimum=1), "Dagster UI port of `pricepipe run`")
    api_port: int = _setting(8000, lambda s: parse_int(s, minimum=1), "API port of `pricepipe run`")
    dagster_ui_url: str = _setting("", lambda s: parse_url("https", "http")(s) if s.strip() else "", "the Dagster "
                                   "UI's address as people reach it, the base of the links in alerts (default: "
                                   "http://<PRICEPIPE_DAGSTER_BIND_HOST>:<PRICEPIPE_DAGSTER_PORT>)")
    alert_webhook_url: str = _setting("", lambda s: parse_url("https", "http")(s) if s.strip() else "", "webhook "
                                      "that receives an alert's opening and resolution as a JSON POST; empty: none",
                                      secret=True)
    alert_webhook_format: str = _setting("json", parse_choice("json", "slack"), "body of the webhook's POSTs: json "
                                         "(pricepipe's fields) or slack (an incoming webhook's text and blocks)")
    alert_smtp_host: str = _setting("", str.strip, "mail server that sends alerts by email; empty: no email")
    alert_smtp_port: int = _setting(587, lambda s: parse_int(s, minimum=1), "mail server's SMTP port")
    alert_smtp_starttls: bool = _setting(True, parse_bool, "upgrade the SMTP connection with STARTTLS before "
                                         "logging in (required when a password is set)")
    alert_smtp_ca_file: Path | None = _setting(None, _optional_path, "PEM file of the CA that signed the mail "
                                               "server's certificate (empty: the system's CAs)")
    alert_smtp_user: str = _setting("", str.strip, "SMTP user name (empty: no login)")
    alert_smtp_password: str = _setting("", str, "SMTP password", secret=True)
    alert_email_from: str = _setting("pricepipe@localhost", str.strip, "sender address of alert emails")
    alert_email_to: tuple[str, ...] = _setting((), lambda s: parse_list(s) if s.strip() else (), "recipients of "
                                               "alert emails, comma-separated; empty: no email")
    alert_feed_silence_s: int = _setting(300, lambda s: parse_int(s, minimum=60), "seconds a feed may publish "
                                         "nothing new before its silence is an incident")
    alert_deadletter_per_min: float = _setting(10.0, parse_speed, "dead letters per minute above which the "
                                               "`deadletter` topic's growth is an incident")
    alert_job_failures: int = _setting(3, lambda s: parse_int(s, minimum=1), "failed runs in a row (after their "
                                       "retries) that make a job's failures an incident")
    state_dir: Path = _setting(None, _path, "local servers' data and logs, Dagster home (default: ~/.local/state/pricepipe)")
    cache_dir: Path = _setting(None, _path, "downloaded artifacts (default: ~/.cache/pricepipe)")

    def __post_init__(self) -> None:
        if self.state_dir is None:
            object.__setattr__(self, "state_dir", _default_state_dir())
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", _default_cache_dir())
        if self.api_workers is None:
            object.__setattr__(self, "api_workers", os.cpu_count() or 1)
        if not self.lake_uri:
            object.__setattr__(self, "lake_uri", str(self.state_dir / "lake"))
        if not self.cassandra_consistency:
            quorum = replication_factor(self.cassandra_replication) >= 3
            object.__setattr__(self, "cassandra_consistency", "LOCAL_QUORUM" if quorum else "LOCAL_ONE")
        if self.cassandra_ssl_ca_file is not None:
            object.__setattr__(self, "cassandra_tls", True)
        self._refuse_plaintext_passwords()
        if self.kafka_min_insync_replicas and self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise SettingsError(f"PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS ({self.kafka_min_insync_replicas}) exceeds "
                                f"PRICEPIPE_KAFKA_REPLICATION_FACTOR ({self.kafka_replication_factor}): no acks=all "
                                "write could ever succeed")

    def _refuse_plaintext_passwords(self) -> None:
        if self.allow_plaintext_passwords:
            return
        if self.kafka_password and "SSL" not in self.kafka_security_protocol.upper():
            raise SettingsError(f"PRICEPIPE_KAFKA_PASSWORD is set but PRICEPIPE_KAFKA_SECURITY_PROTOCOL is "
                                f"{self.kafka_security_protocol}: the password would cross the network unencrypted. "
                                "Use SASL_SSL, or set PRICEPIPE_ALLOW_PLAINTEXT_PASSWORDS=true to accept that")
        if self.cassandra_password and not self.cassandra_tls:
            raise SettingsError("PRICEPIPE_CASSANDRA_PASSWORD is set without TLS: the password would cross the "
                                "network unencrypted. Set PRICEPIPE_CASSANDRA_TLS=true (and "
                                "PRICEPIPE_CASSANDRA_SSL_CA_FILE for a private CA), or "
                                "PRICEPIPE_ALLOW_PLAINTEXT_PASSWORDS=true to accept that")

    def __repr__(self) -> str:
        """Secrets show as ``***``: a settings object in a traceback, a log line or a debugger never
        carries a password or key."""
        shown = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            shown.append(f"{spec.name}={'***' if spec.metadata['secret'] and value else repr(value)}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from ``PRICEPIPE_<FIELD>``; unset variables keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = PREFIX + spec.name.upper()
            raw = env.get(name)
            if raw is None:
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as error:
                message = str(error)
                if spec.metadata["secret"]:
                    message = _masked(message, raw)
                raise SettingsError(f"{name}: {message}") from None
        return cls(**values)

    def redacted(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe for logs, metadata and ``pricepipe config``."""
        shown = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata["secret"]:
                text = "***" if value else ""
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = str(value)
            shown[PREFIX + spec.name.upper()] = text
        return shown

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        """(variable, default, meaning) rows, the source of the README's configuration table."""
        rows = []
        for spec in fields(Settings):
            default = spec.metadata["shown"] or spec.default
            if isinstance(default, bool):
                default = str(default).lower()
            elif isinstance(default, tuple):
                default = ",".join(default)
            rows.append((PREFIX + spec.name.upper(), "" if default is None else str(default), spec.metadata["doc"]))
        return rows


def _masked(message: str, secret: str) -> str:
    """``message`` without the secret value a parser quoted in it (whole, stripped or without its
    trailing slash), so a typo in a password's URL never prints the password."""
    for form in sorted({secret, secret.strip(), secret.strip().rstrip("/")}, key=len, reverse=True):
        if form:
            message = message.replace(form, "***")
    return message


def path_text(path: Path | None) -> str:
    """A file setting as the clients take it: its path, or empty for none."""
    return "" if path is None else str(path)


def get_settings() -> Settings:
    """The settings of this process, read from the environment."""
    return Settings.from_env()
