"""Wireless M-Bus frames published from real meters, with where they were published (test vectors
only; the values each source states are asserted in ``test_wmbus_captures.py``).

Most come from the wmbusmeters project (GPL-3.0; frames are facts, no code is copied): its driver
sources end with ``// Test:`` blocks (a telegram and the JSON the driver prints for it), and its
``simulations/`` files hold telegrams fed to its test scripts. Frames there marked ``NOKEY`` were
received from real meters and published with their payload already decrypted (the configuration
word / ELL session number still says encrypted): we take those only without a key, flagged
``receiver_decrypted``. ``_`` and ``|`` separators of the source are removed.
"""

from __future__ import annotations

# ---- Kamstrup -----------------------------------------------------------------------------------

# Multical 21 (cold water, C1), ELL II with AES-128-CTR, as received: wmbusmeters
# simulations/simulation_aes.msg (rtl-wmbus line "C1;1;1;2020-01-23 10:25:13.000;97;148;76348799")
# and tests/test_aes.sh with the key below; the JSON there: total_m3 6.408, target_m3 6.408,
# flow_temperature_c 127, external_temperature_c 19, current_status DRY, time_dry 22-31 days.
MULTICAL21_ENCRYPTED = bytes.fromhex(
    "2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24"
)
MULTICAL21_KEY = bytes.fromhex("28F64A24988064A079AA2C807D6102AE")

# The same meter's full frame (CI 0x78) and then a compact frame (CI 0x79) naming the full
# frame's format by its signature, both published receiver-decrypted: wmbusmeters
# simulations/simulation_c1.txt "MyTapWater" (same JSON as above for both).
MULTICAL21_FULL = bytes.fromhex(
    "2A442D2C998734761B168D2091D37CAC21576C7802FF207100041308190000441308190000615B7F616713"
)
MULTICAL21_COMPACT = bytes.fromhex("23442D2C998734761B168D2087D19EAD217F1779EDA86AB6710008190000081900007F13")

# Multical 21 with the max-flow configuration, full then compact: simulation_c1.txt "Vadden"
# 44556677: total_m3 20.015, flow_temperature_c 2, external_temperature_c 3, max_flow_m3h 0.317,
# status OK.
MULTICAL21_VADDEN_FULL = bytes.fromhex(
    "2D442D2C776655441B168D2083B48D3A2046887802FF20000004132F4E000092013B3D01A1015B028101E7FF0F03"
)
MULTICAL21_VADDEN_COMPACT = bytes.fromhex(
    "21442D2C776655441B168D2079CC8C3A20F4307912C40DFF00002F4E00003D010203"
)

# flowIQ 2200 (cold water, C1, manufacturer code KAW): simulation_c1.txt "MyWater" 52525252:
# total_m3 44.206, target_m3 43.108, target_date 2020-10-01, flow_m3h 0, min_flow_temperature_c 12,
# max_flow_temperature_c 20, min_external_temperature_c 19, max_flow_m3h 0.495, min_flow_m3h 0.
FLOWIQ2200 = bytes.fromhex(
    "4D44372C525252523A168D203894DF7920F9327804FF23000000000413AEAC0000441364A80000426C812A023B0000"
    "92013BEF01A2013B000006FF1B067000097000A1015B0C91015B14A1016713"
)

# Multical 603 heat meter (C1): wmbusmeters src/driver_multical603.cc "Heat" 36363636:
# total_energy_consumption_kwh 165, total_volume_m3 5.45, volume_flow_m3h 0.018, t1_temperature_c
# 53.28, t2_temperature_c 23.04, forward_energy_m3c 299, return_energy_m3c 156, status OK.
MULTICAL603 = bytes.fromhex(
    "42442D2C3636363635048D20E18025B62087D0780406A500000004FF072B01000004FF089C00000004142102000004"
    "3B120000000259D014025D000904FF2200000000"
)

# OMNIPOWER electricity meter, full then compact: simulation_c1.txt "myomnipower" 32666857:
# total_energy_consumption_kwh 7.94, total_energy_production_kwh 0, current_power_consumption_kw
# 0.003, current_power_production_kw 0.
OMNIPOWER_FULL = bytes.fromhex(
    "2D442D2C5768663230028D20E4E2C81C20878C7804041A03000004843C00000000042B0300000004AB3C00000000"
)
OMNIPOWER_COMPACT = bytes.fromhex(
    "27442D2C5768663230028D20E900C91C2011BA79138CCCFB1A030000000000000300000000000000"
)

# ---- Techem (heat cost allocators, manufacturer CI) and Diehl (water) ---------------------------

# Techem FHKV data III, version 0x69, CI 0xA0: wmbusmeters src/driver_fhkvdataiii.cc "Room"
# 11776622: current_hca 131, current_date 2020-02-08, previous_hca 1026, previous_date 2019-12-31,
# temp_room_c 22.44, temp_radiator_c 25.51. The published telegram carries 3 bytes after the 50
# its L field (0x31) announces.
TECHEM_FHKV_69 = bytes.fromhex(
    "31446850226677116980A0119F27020480048300C408F709143C003D341A2B0B2A0707000000000000062D11445756"
    "3D71A1850000"
)
# version 0x94, CI 0xA2: the same file, "Rooom" 11111234: current_hca 4, current_date 2021-02-05,
# previous_hca 45, previous_date 2020-12-31, temp_room_c 22.37, temp_radiator_c 23.6.
TECHEM_FHKV_94 = bytes.fromhex(
    "33446850341211119480A20F9F292D005024040011BD08380904000000070000000000000000000000000001000000000003140E"
)

# Techem radio converter on a Wehrle water meter (CI 0x72, mode 5, receiver-decrypted):
# simulation_c1.txt "Vatten" 86868686: total_m3 0.016.
TECHEM_WEHRLE = bytes.fromhex(
    "494468509494949495377286868686A85CFE07A90030052F2F0413100000000F52FCF6A52A90A8D83CA8F7FEAE8699"
    "0502323D0C70EFF49833C7C1696F75BCABC1E52E6305308D0F31FB"
)

# Diehl HYDRUS (manufacturer DME), mode 5 receiver-decrypted: wmbusmeters src/driver_hydrus.cc
# "HydrusWater" 64646464: total_m3 1.174, flow_m3h 0, flow_temperature_c 10.4,
# remaining_battery_life_y 13.686797, target_datetime 2019-10-31 23:59, target_m3 0.2.
HYDRUS_WATER = bytes.fromhex(
    "4E44A5116464646470077AED0040052F2F01FD08300C13741100007C1300000000FC101300000000FC201300000000"
    "726C00000B3B00000002FD748713025A6800C4016D3B177F2ACC011300020000"
)
# "HydrusFoo" 64641820: ELL I + AFL (message counter, CMAC) + mode 7, receiver-decrypted:
# total_m3 296.789, at_date 2022-12-31, total_at_date_m3 244.623, total_tariff1_at_date_m3 0,
# total_tariff2_at_date_m3 244.623, target_datetime 2023-09-30 23:59, target_m3 294.128,
# flow_m3h -0.002, flow_temperature_c 19.3, remaining_battery_life_y 9.240436.
HYDRUS_MODE7 = bytes.fromhex(
    "6344A5112018646470078C00D7900F002C256AB59B00F0F13032019092DE7A6A004007102F2F0C13896729004C1323"
    "462400CC101300000000CC201323462400426CDF2C0B3B0200F002FD742F0D025AC100C4016D3B17FE29CC01132841"
    "290001FD089F"
)

# ---- Sensus, Itron, Apator, Qundis, Sontex -------------------------------------------------------

# Sensus iPERL (water, T1): wmbusmeters src/driver_iperl.cc "MoreWater" 12345699 (decrypted, 2F
# fillers): total_m3 7.704, max_flow_m3h 0; "WaterWater" 33225544 (sent in clear, no fillers):
# total_m3 123.529, max_flow_m3h 0.
IPERL_DECRYPTED = bytes.fromhex("1E44AE4C9956341268077A360010002F2F0413181E0000023B00002F2F2F2F")
IPERL_CLEAR = bytes.fromhex("1844AE4C4455223368077A55000000041389E20100023B0000")

# Itron water (T1, sent in clear): wmbusmeters src/driver_itron.cc "SomeWater" 12345698:
# total_m3 4.605, target_m3 3.888, target_date 2021-12-31, meter_datetime 2022-01-21 01:26:44,
# enhanced_id 002108728367. "AnyWater" 20310959: total_m3 111.968, target_m3 87.98, target_date
# 2022-12-31, meter_datetime 2023-07-20 21:18:16.
ITRON_SOMEWATER = bytes.fromhex(
    "384497269856341203077AD90000A00413FD110000066D2C1AA1D521004413300F0000426CBF2C047F0000060C027F"
    "862A0E79678372082100"
)
ITRON_ANYWATER = bytes.fromhex(
    "384497265909312000077a930000a0041360B50100066d101295f427004413ac570100426cdf2c047f0000060c027f"
    "6c2a0e79000000000000"
)
# "MoreWater" 18000056 (CI 0x72 long header, mode 5, receiver-decrypted): total_m3 521.277,
# total_backward_m3 0, volume_flow_m3h 0.004, target_m3 520.461, target_date 2022-10-01,
# meter_datetime 2022-10-08 21:16:14.
ITRON_MOREWATER = bytes.fromhex(
    "46449726560000183307725600001897263307AF0030052F2F066D0E1015C82A000C13771252000C933C0000000"
    "00B3B0400004C1361045200426CC12A03FD971C0000002F2F2F"
)

# Apator AT-WMBUS-16-2 (T1, mode 5, AES key all zeros), as received: wmbusmeters
# simulations/simulation_aes.msg ("T1;1;1;2019-04-03 19:00:42.000;97;148;88888888") with
# tests/test_aes.sh "ApWater apator162 88888888 00000000000000000000000000000000": total_m3 4.848.
APATOR162_ENCRYPTED = bytes.fromhex(
    "6e4401068888888805077a85006085bc2630713819512eb4cd87fba554fb43f67cf9654a68ee8e194088160df752e7"
    "16238292e8af1ac20986202ee561d743602466915e42f1105d9c6782a54504e4f099e65a7656b930c73a30775122d2"
    "fdf074b5035cfaa7e0050bf32faae03a77"
)
APATOR162_KEY = bytes(16)
# receiver-decrypted, wmbusmeters src/driver_apator162.cc: "MyTapWatera" 21202020 total_m3
# 270.133; "MyTapWaterf" 03410514 total_m3 30.908; "NewAndOld" 00148686 total_m3 21.93.
APATOR162_A = bytes.fromhex(
    "4E4401062020202105077A130040852F2F0F6D4C389300020043840210351F040075012C0B040048D603003E630300"
    "CD2C03001EF402000ACE0200A098A39603FFFFFFFFFFFFFFFFFFFFFFFFFF1977"
)
APATOR162_F = bytes.fromhex(
    "3E4401061405410305077A190030852F2F0F86B4B89529020040C6C1B4F0F3F341555942FA701000F0010100001"
    "0BC780000FFFFFFFFFFFFFFFFFFFFFF2483"
)
APATOR162_NEW = bytes.fromhex(
    "4E4401068686140005077A350040852F2F0F005B599600000010AA55000041545A42850BD800437D037301C5500000"
    "564B00009E4600006A410000A01778EC03FFFFFFFFFFFFFFFFFFFFFFFFFFE393"
)

# Apator 08 water meter (manufacturer CI 0xA0): wmbusmeters src/driver_apator08.cc "Vatten"
# 004444dd: total_m3 871.571; "test_apator082" 00149c06: total_m3 457.579333.
APATOR08 = bytes.fromhex(
    "73441486DD4444000303A0B9E527004C4034B31CED0106FF01D093270065F022009661230054D02300EC4924001"
    "8B424005F012500936D2500FFD525000E3D26001EAC26000B2027000300000000371D0B20000000000000240000"
    "00000000280000000000002C0033150C010D2F000000000000"
)
APATOR08_2 = bytes.fromhex("1C441486069C14000F0FA042F214000040030000000005FF0472BF1400")

# ---- frames WITH their link-layer CRCs -----------------------------------------------------------
# wmbusmeters simulations/simulation_dll_crcs.txt ("These telegrams have their dll crc:s still
# inside"), format A; tests/test_dll_crcs.sh states what each is: "000bc37c, (APT) 0x8614, Gas meter
# (0x03), ver 0x03, driver apator08" and "27293981, (SON) Sontex 0x4dee, Heat Cost Allocator
# (0x08), ver 0x16, driver sontex868". It states no values.
APATOR08_WITH_CRC = bytes.fromhex(
    "734414867CC30B0003030D58A00EDF0700DC41343CEA390306FF0A0D44EADF07000DDF07000DDF07000DDF07000E44"
    "F9DF07000EDF07000EDF07000EDF07000E931EDF07000DDF07000DDF07000DDF0700035A4500000000374F0B200000"
    "00000000243412B31C07050C12280000000000002C002302062F19080F2F000000000000DCF5"
)
SONTEX_HCA_WITH_CRC = bytes.fromhex(
    "3444EE4D813929271608811D7A51000000046D1912A62B036E0000005170426CE1F1436E00000002FF2C00000259D6"
    "D0D4090265FC0902FD66A00044C4"
)

# Qundis Q caloric heat cost allocator (C1, OMS records, sent in clear): simulation_c1.txt
# "MyElement" 78563412: current_consumption_hca 127, set_date 2018-12-31,
# consumption_at_set_date_hca 145, set_date_17 2019-01-31, consumption_at_set_date_17_hca 79,
# error_date 2127-15-31 (none), device_date_time 2019-02-20 11:32.
QCALORIC = bytes.fromhex(
    "314493441234567835087a740000200b6e2701004b6e450100426c5f2ccb086e790000c2086c7f21326cffff046d200b7422"
)
# "MyElement2" 90919293: current_consumption_hca 97, set_date 2020-12-31,
# consumption_at_set_date_hca 270, set_date_17 2021-06-30, consumption_at_set_date_17_hca 97,
# device_date_time 2021-07-02 22:45.
QCALORIC_2 = bytes.fromhex(
    "314493449392919034087a520000200b6e9700004b6e700200426c9f2ccb086e970000c2086cbe26326cffff046d2d16a227"
)
