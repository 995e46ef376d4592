"""The Binance dumps client on real dump files, served over real HTTP, published to the real Kafka."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import Candle, DeadLetter, Trade
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.dumps import (
    BinanceDumps,
    ChecksumError,
    Dataset,
    DumpError,
    MissingDayError,
)
from pricepipe_assets.sources.replay import Rejected
from pricepipe_assets_tests.support.exchange_servers.binance_mirror import BinanceMirror
from pricepipe_assets_tests.support.kafka_reads import consume

BTC_1M = Dataset.klines("BTCUSDT", "1m")
BTC_1H = Dataset.klines("BTCUSDT", "1h")
PERP_TRADES = Dataset.agg_trades("BTCUSD_PERP", market="futures/cm")
JAN_1_2024 = dt.date(2024, 1, 1)
MAY_8_2026 = dt.date(2026, 5, 8)
FUTURES_KLINE_HEADER = (b"open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                        b"taker_buy_quote_volume,ignore")


def ms(year: int, month: int, day: int) -> int:
    return int(dt.datetime(year, month, day, tzinfo=dt.UTC).timestamp() * 1000)


def csv_lines(zip_path: Path) -> list[bytes]:
    """The lines of a dump's CSV as stored, read without the client under test."""
    with zipfile.ZipFile(zip_path) as archive:
        return archive.read(archive.namelist()[0]).splitlines()


def write_dump(root: Path, dataset: Dataset, day: dt.date, lines: list[bytes]) -> Path:
    """A dump zip in a mirror folder, laid out as on the site."""
    path = root / dataset.path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(path.name.replace(".zip", ".csv"), b"\n".join(lines) + b"\n")
    return path


@pytest.fixture()
def binance_folder(shared_data: Path) -> Path:
    return shared_data / "binance"


@pytest.fixture()
def mirror(binance_folder: Path) -> Iterator[BinanceMirror]:
    with BinanceMirror(binance_folder) as server:
        yield server


@pytest.fixture()
def dumps(mirror: BinanceMirror, tmp_path: Path) -> BinanceDumps:
    return BinanceDumps(tmp_path / "cache", mirror.url)


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka.publisher()


def test_backfilled_day_arrives_in_kafka_once_per_candle_as_in_the_csv(
        dumps: BinanceDumps, publisher: Publisher, kafka: KafkaResource, binance_folder: Path) -> None:
    result = dumps.backfill(publisher, BTC_1M, JAN_1_2024, JAN_1_2024)

    assert (result.files, result.rows_read, result.records_published, result.dead_letters) == (1, 1440, 1440, 0)
    assert (result.first_event_ms, result.last_event_ms) == (ms(2024, 1, 1) + 59_999, ms(2024, 1, 2) - 1)
    assert result.missing_days == ()
    messages = consume(kafka, topics.CANDLES_1M, 1440)
    assert len(messages) == 1440
    rows = [line.decode().split(",") for line in csv_lines(binance_folder / BTC_1M.path(JAN_1_2024))]
    for message, row in zip(messages, rows, strict=True):
        assert message.key() == b"BTCUSDT"
        assert json.loads(message.value()) == {
            "v": 1, "exchange": "binance", "symbol": "BTCUSDT", "interval": "1m",
            "open_time": int(row[0]), "close_time": int(row[6]),
            "open": float(row[1]), "high": float(row[2]), "low": float(row[3]), "close": float(row[4]),
            "volume": float(row[5]), "quote_volume": float(row[7]), "trades": int(row[8]), "is_closed": True,
            "is_complete": True,
        }


def test_microsecond_hour_files_are_verified_and_published_in_milliseconds(
        dumps: BinanceDumps, publisher: Publisher, kafka: KafkaResource, binance_folder: Path) -> None:
    result = dumps.backfill(publisher, BTC_1H, MAY_8_2026, dt.date(2026, 5, 9))

    assert (result.files, result.verified, result.rows_read, result.records_published) == (2, 2, 48, 48)
    candles = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1H, 48)]
    rows = [line.split(b",") for day in (8, 9)
            for line in csv_lines(binance_folder / BTC_1H.path(dt.date(2026, 5, day)))]
    assert len(rows[0][0]) == 16, "the source is expected in microseconds"
    assert [c.open_time for c in candles] == [int(row[0]) // 1000 for row in rows]
    assert [c.open_time for c in candles] == [ms(2026, 5, 8) + hour * 3_600_000 for hour in range(48)]
    assert all(c.close_time == c.open_time + 3_599_999 for c in candles)


def test_2020_days_are_checked_against_their_checksums_and_read_in_milliseconds(
        dumps: BinanceDumps, publisher: Publisher, tmp_path: Path) -> None:
    result = dumps.backfill(publisher, BTC_1M, dt.date(2020, 1, 1), dt.date(2020, 1, 3))

    assert (result.files, result.verified, result.rows_read, result.records_published) == (3, 3, 4320, 4320)
    assert (result.first_event_ms, result.last_event_ms) == (ms(2020, 1, 1) + 59_999, ms(2020, 1, 4) - 1)
    assert publisher.delivered[publisher.topic_prefix + topics.CANDLES_1M] == 4320
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.CHECKSUM"))
    assert cached == [f"BTCUSDT-1m-2020-01-0{day}.zip.CHECKSUM" for day in (1, 2, 3)]


def test_coin_m_agg_trades_day_with_header_parses_fully_with_taker_side_from_is_buyer_maker(
        dumps: BinanceDumps, binance_folder: Path) -> None:
    downloads = dumps.download(PERP_TRADES, MAY_8_2026, MAY_8_2026)
    trades = list(downloads.records())

    header, *rows = csv_lines(binance_folder / PERP_TRADES.path(MAY_8_2026))
    assert header.startswith(b"agg_trade_id,price,quantity")
    assert downloads.files[0].verified
    assert len(trades) == len(rows) == 105_280
    for trade, line in zip(trades, rows, strict=True):
        trade_id, price, quantity, _, _, transact_time, is_buyer_maker = line.decode().split(",")
        assert isinstance(trade, Trade)
        assert (trade.trade_id, trade.ts, trade.price, trade.size) == (trade_id, int(transact_time), float(price),
                                                                       float(quantity))
        assert trade.side == ("sell" if is_buyer_maker == "true" else "buy")
    assert {t.side for t in trades} == {"buy", "sell"}
    assert {t.exchange for t in trades} == {"binancecoinm"}


def test_futures_kline_header_row_is_skipped_not_dead_lettered(binance_folder: Path, tmp_path: Path) -> None:
    futures = Dataset.klines("BTCUSDT", "1m", market="futures/um")
    rows = csv_lines(binance_folder / BTC_1M.path(JAN_1_2024))
    write_dump(tmp_path / "mirror", futures, JAN_1_2024, [FUTURES_KLINE_HEADER, *rows])
    dumps = BinanceDumps(tmp_path / "cache", (tmp_path / "mirror").as_uri())

    records = list(dumps.records(futures, JAN_1_2024, JAN_1_2024))

    assert len(records) == 1440
    assert all(isinstance(r, Candle) and r.exchange == "binanceusdm" for r in records)


@pytest.mark.parametrize("damage", ["corrupted zip", "wrong checksum"])
def test_checksum_mismatch_is_refused_naming_the_file_and_nothing_is_cached(
        damage: str, binance_folder: Path, tmp_path: Path) -> None:
    day = dt.date(2020, 1, 1)
    mirror_root = tmp_path / "mirror"
    target = mirror_root / BTC_1M.path(day)
    target.parent.mkdir(parents=True)
    shutil.copy(binance_folder / BTC_1M.path(day), target)
    checksum = (binance_folder / f"{BTC_1M.path(day)}.CHECKSUM").read_text()
    if damage == "corrupted zip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        checksum = f"{hashlib.sha256(b'another file').hexdigest()}  {target.name}"
    Path(f"{target}.CHECKSUM").write_text(checksum)
    served = hashlib.sha256(target.read_bytes()).hexdigest()

    with BinanceMirror(mirror_root) as mirror, pytest.raises(ChecksumError) as refused:
        BinanceDumps(tmp_path / "cache", mirror.url).download(BTC_1M, day, day)

    message = str(refused.value)
    assert target.name in message
    assert served in message and checksum.split()[0] in message
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_malformed_row_is_dead_lettered_with_reason_and_raw_bytes_while_other_rows_arrive(
        publisher: Publisher, kafka: KafkaResource, binance_folder: Path, tmp_path: Path) -> None:
    rows = csv_lines(binance_folder / BTC_1M.path(JAN_1_2024))
    truncated = b",".join(rows[1].split(b",")[:5])
    write_dump(tmp_path / "mirror", BTC_1M, JAN_1_2024, [rows[0], truncated, *rows[2:]])

    with BinanceMirror(tmp_path / "mirror") as mirror:
        result = BinanceDumps(tmp_path / "cache", mirror.url).backfill(publisher, BTC_1M, JAN_1_2024, JAN_1_2024)

    assert (result.rows_read, result.records_published, result.dead_letters) == (1440, 1439, 1)
    [message] = consume(kafka, topics.DEADLETTER, 1)
    letter = DeadLetter.from_json(message.value())
    assert letter.source_topic == BTC_1M.path(JAN_1_2024)
    assert letter.error.startswith("line 2: ") and "columns, got 5" in letter.error
    assert letter.raw_bytes() == truncated
    candles = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1M, 1439)]
    assert [c.open_time for c in candles] == [int(row.split(b",")[0]) for i, row in enumerate(rows) if i != 1]


def test_file_base_url_gives_the_same_verified_records_as_http(
        dumps: BinanceDumps, binance_folder: Path, tmp_path: Path) -> None:
    local = BinanceDumps(tmp_path / "file-cache", binance_folder.as_uri())
    first, last = dt.date(2020, 1, 1), dt.date(2020, 1, 3)

    over_http = dumps.download(BTC_1M, first, last)
    from_folder = local.download(BTC_1M, first, last)

    assert [f.verified for f in from_folder.files] == [f.verified for f in over_http.files] == [True] * 3
    records = list(from_folder.records())
    assert len(records) == 4320
    assert records == list(over_http.records())


def test_missing_day_is_an_error_naming_the_url_before_anything_is_published(
        dumps: BinanceDumps, mirror: BinanceMirror, publisher: Publisher) -> None:
    with pytest.raises(MissingDayError) as missing:
        dumps.backfill(publisher, BTC_1M, dt.date(2024, 3, 31), dt.date(2024, 4, 1))

    assert f"{mirror.url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-04-01.zip" in str(missing.value)
    assert sum(publisher.sent.values()) == 0


def test_skipped_missing_day_is_reported_in_the_result(dumps: BinanceDumps, publisher: Publisher) -> None:
    result = dumps.backfill(publisher, BTC_1M, dt.date(2024, 3, 31), dt.date(2024, 4, 1), skip_missing=True)

    assert result.missing_days == (dt.date(2024, 4, 1),)
    assert (result.files, result.records_published) == (1, 1440)


def test_cached_file_is_reused_without_asking_the_server_again(dumps: BinanceDumps, mirror: BinanceMirror) -> None:
    first = dumps.fetch(BTC_1M, dt.date(2020, 1, 1))
    asked = mirror.requests
    again = dumps.fetch(BTC_1M, dt.date(2020, 1, 1))

    assert [status for _, status in asked] == [200, 200]
    assert mirror.requests == asked
    assert again == first and again.verified


def test_day_without_checksum_file_is_downloaded_unverified(dumps: BinanceDumps, mirror: BinanceMirror) -> None:
    file = dumps.fetch(BTC_1M, JAN_1_2024)

    assert not file.verified and file.path.is_file()
    assert [status for _, status in mirror.requests] == [200, 404]


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dumps = BinanceDumps(tmp_path / "cache", f"http://127.0.0.1:{port}", timeout_s=2)

    with pytest.raises(DumpError, match=rf"cannot reach 127\.0\.0\.1:{port} to download http://"):
        dumps.fetch(BTC_1M, JAN_1_2024)


def test_silent_server_is_a_clear_timeout_error(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        dumps = BinanceDumps(tmp_path / "cache", f"http://127.0.0.1:{port}", timeout_s=0.5)

        with pytest.raises(DumpError, match=rf"127\.0\.0\.1:{port} did not answer within 0\.5 s"):
            dumps.fetch(BTC_1M, JAN_1_2024)


def test_rejected_rows_travel_with_the_records_for_a_replay(binance_folder: Path, tmp_path: Path) -> None:
    rows = csv_lines(binance_folder / BTC_1M.path(JAN_1_2024))
    write_dump(tmp_path / "mirror", BTC_1M, JAN_1_2024, [*rows[:3], b"\xff,not a row", *rows[3:]])
    dumps = BinanceDumps(tmp_path / "cache", (tmp_path / "mirror").as_uri())

    items = list(dumps.records(BTC_1M, JAN_1_2024, JAN_1_2024))

    assert len(items) == 1441
    assert items[3] == Rejected(BTC_1M.path(JAN_1_2024), b"\xff,not a row", "line 4: not UTF-8 text")


def test_damaged_cached_file_is_a_clear_error_saying_what_to_do(dumps: BinanceDumps) -> None:
    file = dumps.fetch(BTC_1M, JAN_1_2024)
    file.path.write_bytes(file.path.read_bytes()[:5000])

    with pytest.raises(DumpError, match="is damaged; delete it"):
        list(dumps.records(BTC_1M, JAN_1_2024, JAN_1_2024))


def test_off_a_terminal_progress_is_one_line_per_finished_file_without_carriage_returns(
        mirror: BinanceMirror, tmp_path: Path, publisher: Publisher, capsys: pytest.CaptureFixture[str]) -> None:
    """Standard error is captured here, not a terminal: as in a log file, no bar is drawn."""
    dumps = BinanceDumps(tmp_path / "cache", mirror.url, progress=True)
    dumps.backfill(publisher, BTC_1M, dt.date(2024, 3, 31), dt.date(2024, 4, 1), skip_missing=True)

    progress = capsys.readouterr().err
    assert "\r" not in progress
    assert progress.splitlines() == [f"download {BTC_1M}: 2024-03-31 ready (1/2)",
                                     f"download {BTC_1M}: 2024-04-01 missing (2/2)",
                                     f"publish {BTC_1M}: 2024-03-31 published, 1,440 rows"]
