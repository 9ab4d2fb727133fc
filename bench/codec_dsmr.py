"""DSMR P1: our decoder vs dsmr_parser (the reference Python library) on the same telegram."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

from _codec_bench import BenchCase
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

from smarthub.meters.dsmr import data_points, decode_telegram
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile


def cases() -> list[BenchCase]:
    frame = DsmrMeterSimulator(
        "E0001", "G0001", HouseholdProfile(1), start=datetime(2026, 3, 2, tzinfo=UTC)
    ).telegram_at(datetime(2026, 3, 2, 12, tzinfo=UTC))
    text = frame.decode("ascii")
    parser = TelegramParser(telegram_specifications.V5)
    return [
        BenchCase(
            "dsmr",
            "DSMR 5 telegram with gas channel, CRC checked, to data points",
            lambda: data_points(decode_telegram(frame)),
            lambda: parser.parse(text),
            f"dsmr-parser {version('dsmr-parser')}",
            len(frame),
        )
    ]
