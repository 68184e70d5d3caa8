"""The simulated EW-DX receiver's state: device, channels and transmitters, as the device holds them.

No I/O. The wire shape of each resource is :mod:`.api`'s job; this module keeps the values and the
few rules that derive one value from others (warnings, transmitter JSON by type, meter drift).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

VENDOR: Final = "Sennheiser electronic SE & Co. KG"

# model → (identity.product, channels, default site name)
MODELS: Final[dict[str, tuple[str, int, str]]] = {
    "EW-DX EM2": ("EWDX2CHS", 2, "EWDXEM2"),
    "EW-DX EM2 Dante": ("EWDX2CHDS", 2, "EWDXEM2D"),
    "EW-DX EM4": ("EWDX4CHDS", 4, "EWDXEM4"),
    "EW-DX EM4 Dante": ("EWDX4CHDS", 4, "EWDXEM4"),
}
# transmitter wire type → front-panel model name (the sim's own table, kept apart from the adapter's)
TX_NAMES: Final[dict[str, str]] = {
    "EW_D_SKP": "EW-D SKP",
    "EW_D_SK": "EW-D SK",
    "EW_D_SKM_S": "EW-D SKM-S",
    "EW_DX_SK": "EW-DX SK",
    "EW_DX_SK_3_PIN": "EW-DX SK 3-PIN",
    "EW_DX_SKM": "EW-DX SKM",
    "EW_DX_SKM_S": "EW-DX SKM-S",
    "EW_DX_TS_3_PIN": "EW-DX TS 3-PIN",
    "EW_DX_TS_5_PIN": "EW-DX TS 5-PIN",
}
RF_CODE: Final = "Q1-9"
RF_RANGES: Final = ({"start": 470200, "end": 550000, "stepSize": 25},)
FACTORY_BANK: Final = tuple(470200 + 2000 * n + (n % 3) * 350 for n in range(32))  # bank 0 presets, kHz
LOW_BATTERY_PERCENT: Final = 10  # below this the TX raises LowBattery (threshold UNVERIFIED)
NO_SIGNAL: Final = {"rssi": -107.0, "rsqi": 0, "divi": 0, "level": -138.5}
METER_TEMPLATES: Final = (
    "/api/channel/{i}/signalStrengthIndicator",
    "/api/channel/{i}/signalQualityIndicator",
    "/api/channel/{i}/diversityIndicator",
    "/api/channel/{i}/level",
)


@dataclass
class SimTx:
    type: str = "EW_DX_SKM"
    name: str = ""
    mute: bool = False
    version: str = "4.0.0"
    capsule: str = "MMD_935"
    lowcut: str = "80Hz"
    trim: float = 0.0
    lock: bool = False
    led: bool = True
    identification: bool = False
    battery_type: str = "Battery"
    gauge: int = 80
    lifetime: int = 420  # minutes


@dataclass
class SimRx:
    name: str
    frequency: int
    mute: bool = False
    gain: int = 18
    output_level: int = 0
    identify: bool = False
    preset: dict[str, Any] = field(default_factory=lambda: {"type": "None"})
    tx: SimTx | None = None
    rssi: float = NO_SIGNAL["rssi"]
    rsqi: int = 0
    divi: int = 0
    level: float = NO_SIGNAL["level"]
    event_counter: int = 0


@dataclass(frozen=True, slots=True)
class SimChannel:
    """A channel in normalized units, for tests to compare with what the daemon reports."""

    name: str
    frequency_khz: int
    muted: bool
    gain_db: float
    tx_present: bool
    tx_type: str | None
    tx_model: str | None
    battery_percent: int | None
    runtime_minutes: int | None
    rssi_dbm: float
    link_quality: int
    af_dbfs: float



class EwdxDevice:
    """One EW-DX EM2/EM4 receiver's values; the simulator serves them and tests steer them."""

    def __init__(
        self,
        model: str = "EW-DX EM4",
        channels: int | None = None,
        *,
        password: str = "secret",
        seed: int = 0,
        serial: str | None = None,
        firmware: str = "4.0.1",
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
        self.model = model
        self.product, default_channels, site_name = MODELS[model]
        self.n_channels = channels if channels is not None else default_channels
        self.password = password
        self.users: dict[str, str] = {
            "api": password,
            "controlSennheiser": "Control-Pass-1",
            "initialSennheiser": "sennheiser",
        }
        self.serial = serial or f"{1023456789 + seed}"
        self.firmware = firmware
        self.site = {"deviceName": site_name, "location": "", "position": ""}
        self.device_state = "Normal"
        self.device_warnings: list[str] = []
        self.visual = False
        self.encryption = False
        self.rx: list[SimRx] = []
        for i in range(self.n_channels):
            rx = SimRx(name=f"CH {i + 1}", frequency=FACTORY_BANK[i * 3])
            rx.preset = {"type": "Factory", "bank": 0, "channel": i * 3 + 1}
            if i < max(1, self.n_channels - 1):  # every channel but the last has a transmitter
                tx_type = ("EW_DX_SKM", "EW_DX_SK", "EW_DX_SKM_S", "EW_DX_TS_5_PIN")[i % 4]
                self.link_tx(rx, SimTx(type=tx_type, name=f"TX{i + 1}", gauge=90 - 10 * i, lifetime=480 - 60 * i))
            self.rx.append(rx)

    def channel(self, n: int) -> SimChannel:
        """Channel ``n`` (1-based, as on the front panel) in normalized units."""
        rx = self.rx[n - 1]
        tx = rx.tx
        return SimChannel(
            name=rx.name,
            frequency_khz=rx.frequency,
            muted=rx.mute,
            gain_db=float(rx.gain),
            tx_present=tx is not None,
            tx_type=tx.type if tx else None,
            tx_model=TX_NAMES.get(tx.type, tx.type) if tx else None,
            battery_percent=tx.gauge if tx else None,
            runtime_minutes=tx.lifetime if tx else None,
            rssi_dbm=rx.rssi,
            link_quality=rx.rsqi,
            af_dbfs=rx.level,
        )

    def set_password(self, password: str) -> None:
        """Change the ``api`` user's password (as re-enabling third-party access would)."""
        self.password = password
        self.users["api"] = password

    @staticmethod
    def link_tx(rx: SimRx, tx: SimTx) -> None:
        """A transmitter links to ``rx``: it brings a signal."""
        rx.tx = tx
        rx.rssi, rx.rsqi, rx.divi, rx.level = -55.0, 92, 1, -30.0

    def rx_warnings(self, rx: SimRx) -> list[str]:
        out: list[str] = []
        if self.encryption and rx.tx is not None and rx.tx.type.startswith("EW_D_"):
            out.append("Aes256Error")  # EW-D transmitters cannot do AES-256 (plausible, UNVERIFIED)
        if rx.tx is None:
            out.append("NoLink")
        elif rx.rsqi < 30:
            out.append("LowSignal")
        if rx.rssi > -20:
            out.append("RfPeak")
        if rx.level >= -1.0:
            out.append("AfPeak")
        return out

    @staticmethod
    def tx_json(tx: SimTx) -> dict[str, Any]:
        base: dict[str, Any] = {"type": tx.type, "version": tx.version, "mute": tx.mute,
                                "identification": tx.identification}
        if tx.type.startswith("EW_D_"):
            base["capsule"] = tx.capsule if tx.type == "EW_D_SKM_S" else "Unknown"
            return base
        base.update({"name": tx.name, "trim": tx.trim, "led": tx.led, "lock": tx.lock, "lowcut": tx.lowcut})
        if tx.type in ("EW_DX_SK", "EW_DX_SK_3_PIN"):
            base.update({"capsule": "None", "cableEmulation": "Off", "muteConfig": "AfMute"})
        elif tx.type.startswith("EW_DX_TS"):
            base.update({"capsule": "Unknown", "cableEmulation": "Off", "muteConfigTableStand": "AfMute"})
        else:
            base["capsule"] = tx.capsule
            if tx.type == "EW_DX_SKM_S":
                base["muteConfig"] = "AfMute"
        return base

    def wander_meters(self, rng: random.Random) -> list[str]:
        """One lively tick: meters of linked channels drift; returns the paths that changed."""
        paths: list[str] = []
        for i, rx in enumerate(self.rx):
            if rx.tx is None:
                continue
            rx.rssi = round(min(-30.0, max(-95.0, rx.rssi + rng.uniform(-3, 3))), 1)
            rx.rsqi = int(min(100, max(40, rx.rsqi + rng.randint(-4, 4))))
            if rng.random() < 0.2:
                rx.divi = 3 - rx.divi if rx.divi in (1, 2) else 1
            rx.level = round(min(-6.0, max(-70.0, rx.level + rng.uniform(-6, 6))), 1)
            paths += [t.format(i=i) for t in METER_TEMPLATES]
        return paths
