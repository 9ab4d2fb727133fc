"""HAN media with their real range and loss: a link model per medium, for the simulator and for
roll-out planning (``smarthub plan-han``).

The media and their figures are the source document's Table 1 ("HAN media technology
comparison", from the T-City Friedrichshafen trials): gross data rate, whether the medium is
shared and IP-based, receiver-on power, reliable in-house range and nodes per medium. Its text
adds what the table summarises: 2.4 GHz 802.15.4 is limited to 10 mW EIRP in most of Europe
and suffers through walls; 868 MHz "allow[s] a communications distance of between 10 and 30
meters in buildings, including between storeys"; EN 13757-4 at up to 25 mW "increases the
distance by a factor of three to five times" over 2.4 GHz at 10 mW; HomePlug reaches 100–200 m
along the wiring with 16 (1.0) or 32 (Turbo) nodes; 10Base-T 100 m of cable.

Radio links (802.15.4 at 2.4 GHz and 868 MHz, Wi-Fi, EN 13757-4) use an indoor path-loss model
of the ITU-R P.1238 form — free-space loss at 1 m, a distance power-loss exponent, and a loss per
floor — with a loss per interior wall (the multi-wall model of COST 231), giving a received level
(dBm) per frame, compared with the receiver sensitivity the standard requires (IEEE 802.15.4:
−85 dBm at 2.4 GHz, −92 dBm at 868 MHz; IEEE 802.11g at 6 Mbit/s: −82 dBm; EN 13757-4 T-mode
receivers: about −100 dBm). The distance exponent is *calibrated to Table 1*: it is set so that
at the table's reliable in-house range, in a typical home (one interior wall per
:data:`METRES_PER_WALL`, same floor), the link keeps a fade margin of :data:`FADE_MARGIN_DB` —
the trials' ranges include the interference and clutter of real homes, which a free-space
exponent would not. So the model reproduces the table's ranges, and walls and floors weigh as
each band's physics says (2.4 GHz loses more per wall and floor than 868 MHz). Frame loss is a
logistic function of the margin over sensitivity (about 1 % at the fade margin, 50 % at none); a
frame is re-sent up to ``retries`` times where the medium acknowledges (802.15.4, Wi-Fi, HomePlug), never for
EN 13757-4 T-mode, which is one-way.

Wired media (HomePlug over the mains, 10Base-T) have no walls: what counts is the length of the
wiring (``Placement.wiring_m``, by default 1.5 × the straight distance plus 3 m per floor).

This is a planning model, not a measurement: its figures are the table's and textbook
coefficients, and a site survey overrules it. The coefficients are named below.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "FADE_MARGIN_DB",
    "MEDIA",
    "METRES_PER_WALL",
    "LinkEstimate",
    "Medium",
    "MediumKind",
    "Placement",
    "estimate",
    "frame_delivered",
    "rssi_sample",
]

FADE_MARGIN_DB = 10.0  # margin kept at the table's reliable range (Rayleigh fading, people moving)
METRES_PER_WALL = 5.0  # a typical home's interior walls crossed per metre, for the calibration
_LOSS_SLOPE_DB = 2.0  # logistic width of frame loss against the margin
_LOSS_AT_MARGIN = 0.01  # frame loss at the fade margin (before retries)


class MediumKind(Enum):
    RADIO = "radio"
    POWERLINE = "powerline"
    CABLE = "cable"


@dataclass(frozen=True)
class Medium:
    """One row of Table 1 with the propagation coefficients of its band."""

    key: str
    name: str
    kind: MediumKind
    shared: bool
    gross_rate_bps: int  # the lower end of the table's range where it gives one
    ip_based: bool
    rx_on_power_w: float
    reliable_range_m: float
    max_nodes: int | None  # None: "> 100" in the table
    acknowledged: bool  # link-layer acknowledgement and retry (T-mode wM-Bus has none)
    frequency_mhz: float = 0.0
    tx_power_dbm: float = 0.0
    sensitivity_dbm: float = 0.0  # the standard's required receiver sensitivity
    floor_loss_db: float = 0.0  # per floor crossed
    wall_loss_db: float = 0.0  # per interior wall crossed (COST 231 multi-wall, light walls)
    mac_overhead_s: float = 0.0  # channel access and framing per frame

    @property
    def distance_exponent(self) -> float:
        """ITU-R P.1238's N, calibrated so Table 1's reliable range keeps the fade margin."""
        if self.kind is not MediumKind.RADIO:
            raise ValueError(f"{self.name} is not a radio")
        walls = round(self.reliable_range_m / METRES_PER_WALL)
        budget = self.tx_power_dbm - (self.sensitivity_dbm + FADE_MARGIN_DB)
        rest = budget - _fspl_1m_db(self.frequency_mhz) - self.wall_loss_db * walls
        return rest / (10 * math.log10(self.reliable_range_m))


def _fspl_1m_db(frequency_mhz: float) -> float:
    """Free-space loss at 1 m: 20·log10(f/MHz) − 27.55 dB."""
    return 20 * math.log10(frequency_mhz) - 27.55


MEDIA: dict[str, Medium] = {
    m.key: m
    for m in (
        Medium(
            "zigbee-2.4", "802.15.4 2.4 GHz / 10 mW, not meshed", MediumKind.RADIO, True, 250_000, False,
            0.1, 10.0, None, True, 2440.0, 10.0, -85.0, 10.0, 4.0, 0.004,
        ),
        Medium(
            "zigbee-868", "802.15.4 868 MHz / 10 mW", MediumKind.RADIO, True, 20_000, False,
            0.1, 30.0, None, True, 868.0, 10.0, -92.0, 6.0, 2.0, 0.010,
        ),
        Medium(
            "wifi", "Wi-Fi (IEEE 802.11b/g)", MediumKind.RADIO, True, 2_000_000, True,
            0.4, 15.0, None, True, 2440.0, 20.0, -82.0, 10.0, 4.0, 0.002,
        ),
        Medium(
            "homeplug-1.0t", "HomePlug 1.0 Turbo", MediumKind.POWERLINE, True, 2_000_000, True,
            1.5, 150.0, 32, True, mac_overhead_s=0.003,
        ),
        Medium(
            "10base-t", "10Base-T", MediumKind.CABLE, False, 100_000_000, True,
            0.1, 100.0, 2, False, mac_overhead_s=0.0001,
        ),
        Medium(
            "homeplug-gp", "HomePlug Green PHY", MediumKind.POWERLINE, True, 3_800_000, True,
            0.3, 150.0, None, True, mac_overhead_s=0.003,
        ),
        Medium(
            "wmbus-868", "EN 13757-4 (wireless M-Bus T-mode, 868 MHz / 25 mW)", MediumKind.RADIO, True,
            16_000, False, 0.1, 30.0, None, False, 868.95, 14.0, -100.0, 6.0, 2.0, 0.003,
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Placement:
    """Where a meter is from the hub: straight distance, interior walls and floors between."""

    distance_m: float
    walls: int = 0
    floors: int = 0
    wiring_m: float | None = None  # the mains or cable run, if known

    def __post_init__(self) -> None:
        if self.distance_m < 0 or self.walls < 0 or self.floors < 0:
            raise ValueError("distance, walls and floors are not negative")

    @property
    def wiring(self) -> float:
        return self.wiring_m if self.wiring_m is not None else 1.5 * self.distance_m + 3.0 * self.floors


def _received_dbm(medium: Medium, p: Placement) -> float:
    d = max(p.distance_m, 1.0)
    path = (
        _fspl_1m_db(medium.frequency_mhz)
        + 10 * medium.distance_exponent * math.log10(d)
        + medium.floor_loss_db * p.floors
        + medium.wall_loss_db * p.walls
    )
    return medium.tx_power_dbm - path


def _frame_loss(margin_db: float) -> float:
    """Logistic in the margin: 50 % at 0 dB, :data:`_LOSS_AT_MARGIN` at the fade margin."""
    centre = FADE_MARGIN_DB - _LOSS_SLOPE_DB * math.log(1 / _LOSS_AT_MARGIN - 1)
    return 1.0 / (1.0 + math.exp((margin_db - centre) / _LOSS_SLOPE_DB))


@dataclass(frozen=True)
class LinkEstimate:
    medium: str
    rssi_dbm: float | None  # radios only
    margin_db: float | None  # radios: over sensitivity; wired: None
    frame_loss: float  # one attempt
    delivery: float  # with the medium's retries
    latency_s: float  # mean, retries included
    reaches: bool  # within the table's reliable range (loss after retries under 1 %)


def estimate(medium: Medium, placement: Placement, frame_bytes: int = 64, retries: int = 3) -> LinkEstimate:
    """What a frame of ``frame_bytes`` meets on ``medium`` at ``placement``."""
    airtime = frame_bytes * 8 / medium.gross_rate_bps + medium.mac_overhead_s
    rssi: float | None = None
    margin: float | None = None
    if medium.kind is MediumKind.RADIO:
        rssi = _received_dbm(medium, placement)
        margin = rssi - medium.sensitivity_dbm
        loss = _frame_loss(margin)
    else:
        # Wired: reliable up to the table's range; past it the loss grows over a fifth more.
        over = (placement.wiring - medium.reliable_range_m) / (0.2 * medium.reliable_range_m)
        loss = 0.0 if medium.kind is MediumKind.CABLE and over <= 0 else 1.0 / (1.0 + math.exp(-4 * over - 2))
        if medium.kind is MediumKind.CABLE and over > 0:
            loss = 1.0  # Ethernet past 100 m: no link
    attempts = 1 + (retries if medium.acknowledged else 0)
    delivery = 1.0 - loss**attempts
    expected_tries = sum(loss**k for k in range(attempts))  # 1 + p + p² … (geometric, truncated)
    return LinkEstimate(
        medium.key,
        None if rssi is None else round(rssi, 1),
        None if margin is None else round(margin, 1),
        loss,
        delivery,
        airtime * expected_tries,
        delivery >= 0.99,
    )


def rssi_sample(medium: Medium, placement: Placement, rng: random.Random, sigma_db: float = 4.0) -> float:
    """One frame's received level: the mean plus log-normal shadowing (σ dB)."""
    return _received_dbm(medium, placement) + rng.gauss(0.0, sigma_db)


def frame_delivered(medium: Medium, rssi_dbm: float, rng: random.Random, retries: int = 3) -> bool:
    """Whether a frame received at ``rssi_dbm`` gets through (with the medium's retries)."""
    loss = _frame_loss(rssi_dbm - medium.sensitivity_dbm)
    attempts = 1 + (retries if medium.acknowledged else 0)
    return any(rng.random() >= loss for _ in range(attempts))
