"""Published test telegrams, with their sources.

* ``PYMETERBUS_*``: the test frames of pyMeterBus 0.8.5 (BSD-3-Clause, tests/ in its sdist),
  with the values its tests assert.
* ``WMBUSMETERS_*``: wmbusmeters' src/testinternals.cc (CRC check values, dvparser records).
"""

from __future__ import annotations

# tests/test_elvaco_cma10.py: Elvaco CMa10 room sensor, 13 records, DIF 0x1F at the end.
PYMETERBUS_ELVACO = bytes.fromhex(
    "685353680805723408005496153200f200000001fd1b0002fc0348522574d41122fc0348522574c81112"
    "fc0348522574b4160265d00822657008126523090172184265e408820165dd080c783408005403fd0f00"
    "00041f5d16"
)
# tests/test_hyd.py: Hydrometer heat meter, 12 records.
PYMETERBUS_HYD = bytes.fromhex(
    "68545468084e727875015124232004467000000c06000000008c1006000000000c13439436018c201300"
    "0000008c4013480000008c8040131200000002fd1710003b3bbdebdd3c2bbdebdddd0a5a74010a5e7201"
    "0a6201006b16"
)
# tests/test_weptech.py: WEPTECH room sensor, FB/FD extension VIFs and idle fillers.
PYMETERBUS_WEPTECH = bytes.fromhex(
    "683d3d68080b7221000000b05c021b120000000c784904006402750a0001fd711e2f2f0a6620020afb1a"
    "310502fd971d00002f2f2f2f2f2f2f2f2f2f2f2f2f2f2fdd16"
)
# tests/test_unknown_pl.py: CI 0x76 (mode 2, most significant byte first) heat meter.
PYMETERBUS_CI76 = bytes.fromhex(
    "6864646808017615531111000052040a100000026c23123c0f00585340bc200f000000003c1503797168"
    "8c1013000000008c2013000000008c3013000000008c4013000000003a3d02633a2e01070a5a04250a5e"
    "03890c22000380713c2200029080047e00003a122c16"
)
# tests/test_frametype.py
PYMETERBUS_SHORT = bytes.fromhex("10080b1316")
PYMETERBUS_CONTROL = bytes.fromhex("68030368080b728516")

# tests/test_encrypted_wmbus.py: wM-Bus mode 5, CRCs stripped, key for meter id 00096255.
PYMETERBUS_WMBUS_MODE5 = bytes.fromhex(
    "2e44090755620900070c7a131020059e41561b485f193b3163b28aea226622e71e86565012329876dcc07de0dd855b"
)
PYMETERBUS_WMBUS_MODE5_KEY = bytes.fromhex("CB6ABFAA8D2247B59127D3B839CF34B4")

# wmbusmeters src/testinternals.cc test_crc(): CRC-16/EN-13757 check values.
WMBUSMETERS_CRC = [
    (bytes.fromhex("01fd1f01"), 0xCC22),
    (bytes.fromhex("01fd1f00"), 0xF147),
    (bytes.fromhex("EE449ACE010000802307"), 0xAABC),
    (b"123456789", 0xC2B7),
]
# wmbusmeters src/testinternals.cc test_dvparser(): record sequences.
WMBUSMETERS_DV1 = bytes.fromhex("2F2F0B135634128B8200933E6745230DFD100A303132333435363738390F882F")
WMBUSMETERS_DATE_2010_12_31 = bytes.fromhex("82046C5f1C")
WMBUSMETERS_DATE_2007_04_30 = bytes.fromhex("426CFE04")
WMBUSMETERS_DATE_YEAR_127 = bytes.fromhex("426CE1F1")
