"""Windows as Arrow tables and Parquet files (connstats.export.arrow).

The oracle is the window's dicts (Connection -> Counts), which the rest of
the suite checks against the reference decoder: every Arrow row must be one
dict item, read back through pyarrow's own ``to_pylist``, with the address
text that ``str()`` of the ipaddress object gives.  The compiled core's
column pass is also compared with the pure-Python twin on the same windows.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connstats
from connstats import _fastparse_py
from connstats._impl import IS_COMPILED

pa = pytest.importorskip(
    "pyarrow", reason="pyarrow is not installed (connstats[arrow])"
)
pq = pytest.importorskip("pyarrow.parquet")

from connstats.export import arrow  # noqa: E402

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
U64 = 2**64 - 1
START = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
END = START + timedelta(seconds=10)


def _ns(moment: datetime) -> int:
    return (
        int((moment - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds())
        * 10**9
        + moment.microsecond * 1000
    )


def expected_rows(virtual, physical, start_ns, end_ns):
    """The rows of a window, built from its dicts with plain Python."""
    rows = []
    for traffic, table in (("virtual", virtual), ("physical", physical)):
        for conn, counts in table.items():
            row = {
                "window_start": start_ns,
                "window_end": end_ns,
                "traffic": traffic,
                "proto": conn.proto,
                "src_addr": None if conn.src.addr is None else str(conn.src.addr),
                "src_port": conn.src.port,
                "dst_addr": None if conn.dst.addr is None else str(conn.dst.addr),
                "dst_port": conn.dst.port,
                "tx_packets": counts.tx_packets,
                "tx_bytes": counts.tx_bytes,
                "rx_packets": counts.rx_packets,
                "rx_bytes": counts.rx_bytes,
            }
            if hasattr(counts, "first_ns"):
                row["first_seen"] = counts.first_ns
                row["last_seen"] = counts.last_ns
            rows.append(row)
    return rows


def table_rows(table):
    """pyarrow's own reading of a table, timestamps as int ns."""
    rows = []
    for row in table.cast(_int_times(table.schema)).to_pylist():
        rows.append(row)
    return rows


def _int_times(schema):
    fields = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            f = f.with_type(pa.int64())
        elif pa.types.is_dictionary(f.type):
            f = f.with_type(pa.string())
        fields.append(f)
    return pa.schema(fields)


def _key(row):
    return tuple(sorted((k, str(v)) for k, v in row.items()))


def same_rows(a, b):
    return sorted(map(_key, a)) == sorted(map(_key, b))


# -- windows of random values ---------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6 = st.one_of(
    st.integers(0, 2**128 - 1).map(IPv6Address),
    st.integers(0, 2**32 - 1).map(lambda v: IPv6Address(0xFFFF << 32 | v)),
    st.integers(0, 2**48 - 1).map(IPv6Address),
    st.sampled_from(
        [IPv6Address("::"), IPv6Address("::1"), IPv6Address("2001:db8::1")]
    ),
)
counts = st.one_of(st.sampled_from([0, 1, 2**63, U64]), st.integers(0, U64))
times = st.integers(-(2**63), 2**63 - 1)


def window_strategy(module, timed: bool):
    @st.composite
    def build(draw):
        def endpoint(may_miss):
            addr = draw(
                st.one_of(st.none(), ipv4, ipv6) if may_miss else st.one_of(ipv4, ipv6)
            )
            return module.AddrPort(addr, draw(st.integers(0, 65535)))

        def value():
            c = [draw(counts) for _ in range(4)]
            if timed:
                first, last = sorted((draw(times), draw(times)))
                return module.TimedCounts(*c, first_ns=first, last_ns=last)
            return module.Counts(*c)

        virtual = {}
        for _ in range(draw(st.integers(0, 30))):
            miss = draw(st.booleans())
            conn = module.Connection(
                draw(st.integers(0, 255)), endpoint(miss), endpoint(miss)
            )
            virtual[conn] = value()
        physical = {}
        for _ in range(draw(st.integers(0, 5))):
            conn = module.Connection(
                0, module.AddrPort(draw(st.one_of(ipv4, ipv6)), 0), endpoint(False)
            )
            physical[conn] = value()
        return virtual, physical

    return build()


@pytest.mark.parametrize("timed", [False, True])
def test_table_rows_are_the_dict_items(impl, timed):
    @SETTINGS
    @given(window_strategy(impl.module, timed))
    def check(window):
        virtual, physical = window
        table = _table_on(impl.module, START, END, virtual, physical)
        assert table.column_names == list(arrow.COLUMNS) + (
            list(arrow.TIME_COLUMNS) if timed and (virtual or physical) else []
        )
        assert table.num_rows == len(virtual) + len(physical)
        assert same_rows(
            table_rows(table), expected_rows(virtual, physical, _ns(START), _ns(END))
        )

    check()


def _table_on(module, start, end, virtual, physical, **kwargs):
    # arrow.table goes through the selected core; the other core's values
    # go through its own columns() (same code path below it).
    if module is _fastparse_py and IS_COMPILED:
        cols = module.columns((virtual, physical), kwargs.get("community_id", False))
        return arrow._from_columns(
            cols,
            arrow._ns(start, "start"),
            arrow._ns(end, "end"),
            community_id=kwargs.get("community_id", False),
            seed=kwargs.get("seed", 0),
        )
    return arrow.table(start, end, virtual, physical, **kwargs)


@pytest.mark.skipif(not IS_COMPILED, reason="the compiled core is not in use")
def test_compiled_columns_are_the_pure_columns():
    from connstats import _fastparse as c

    @SETTINGS
    @given(window_strategy(c, False), st.booleans())
    def check(window, timed):
        virtual, physical = window
        if timed:
            virtual = {
                k: c.TimedCounts(*v, first_ns=i, last_ns=i + 7)
                for i, (k, v) in enumerate(virtual.items())
            }
            physical = {
                k: c.TimedCounts(*v, first_ns=-i, last_ns=i)
                for i, (k, v) in enumerate(physical.items())
            }
        pure = _to_pure(virtual), _to_pure(physical)
        got = c.columns((virtual, physical), True)
        want = _fastparse_py.columns(pure, True)
        for name in (
            "n kind proto src_family dst_family src_port dst_port tx_packets tx_bytes "
            "rx_packets rx_bytes src_valid dst_valid src_offsets dst_offsets src_text "
            "dst_text src_packed dst_packed first_ns last_ns"
        ).split():
            assert getattr(got, name) == getattr(want, name), name

    check()


def _to_pure(table):
    out = {}
    for conn, counts in table.items():
        key = _fastparse_py.Connection(
            conn.proto,
            _fastparse_py.AddrPort(conn.src.addr, conn.src.port),
            _fastparse_py.AddrPort(conn.dst.addr, conn.dst.port),
        )
        if isinstance(counts, connstats._impl.core.TimedCounts):
            out[key] = _fastparse_py.TimedCounts(
                *counts, first_ns=counts.first_ns, last_ns=counts.last_ns
            )
        else:
            out[key] = _fastparse_py.Counts(*counts)
    return out


# -- from a cut window, without its dicts ---------------------------------------


def _packets(n, seed=1):
    from captures import tcp4, udp6

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if rng.random() < 0.2:
            out.append(
                udp6(
                    "2001:db8::1",
                    rng.randrange(65536),
                    "::ffff:1.2.3.4",
                    53,
                    b"x" * rng.randrange(30),
                )
            )
        else:
            out.append(
                tcp4(
                    a,
                    rng.randrange(1024, 1100),
                    "192.0.2.7",
                    443,
                    b"y" * rng.randrange(100),
                )
            )
    return out


@pytest.mark.parametrize("timed", [False, True])
def test_window_table_is_the_table_of_its_dicts(impl, timed):
    core = impl.Core(track_times=timed)
    packets = _packets(3000)
    core.update_tx_virtual_batch(packets[:1500])
    core.update_rx_virtual_batch(packets[1500:])
    core.update_tx_physical("100.64.0.1", ("198.51.100.9", 41641), 120)
    core.update_rx_physical("fd7a::1", ("2001:db8::9", 41641), 80)
    core.update_tx_virtual(b"\x45")  # undecoded: no addresses
    window = core.cut()
    start_ns, end_ns = 1_700_000_000_123_456_789, 1_700_000_010_000_000_001
    if impl.module is _fastparse_py and IS_COMPILED:
        cols = _fastparse_py.columns(window)
        direct = arrow._from_columns(cols, start_ns, end_ns, community_id=False, seed=0)
    else:
        direct = arrow.window_table(window, start_ns, end_ns)
    virtual, physical = window.to_dicts()
    assert same_rows(
        table_rows(direct), expected_rows(virtual, physical, start_ns, end_ns)
    )
    assert (arrow.TIME_COLUMNS[0] in direct.column_names) == timed


def test_schema_and_types():
    core = connstats._impl.core.Core()
    core.update_tx_virtual_batch(_packets(10))
    table = arrow.window_table(core.cut(), 0, 1)
    assert table.schema == arrow.schema()
    assert str(table.schema.field("window_start").type) == "timestamp[ns, tz=UTC]"
    assert table.column("traffic").to_pylist() == ["virtual"] * table.num_rows
    with_all = arrow.schema(times=True, community_id=True)
    assert with_all.names[-3:] == ["first_seen", "last_seen", "communityId"]


def test_window_bounds_from_datetimes_are_exact():
    # microsecond datetimes far from the epoch lose digits through float
    start = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)
    assert arrow._ns(start, "start") == 9223372036854775000
    local = datetime(2026, 1, 1, 1, 0, 0, 1, tzinfo=timezone(timedelta(hours=1)))
    assert arrow._ns(local, "start") == _ns(
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)
    )
    with pytest.raises(ValueError, match="start"):
        arrow.table(datetime(2026, 1, 1), END, {}, {})
    with pytest.raises(TypeError, match="end"):
        arrow.table(START, 1.5, {}, {})


def test_bad_tables_raise_naming_the_argument(impl):
    good = impl.Connection(
        6,
        impl.AddrPort(IPv4Address("1.2.3.4"), 1),
        impl.AddrPort(IPv4Address("5.6.7.8"), 2),
    )
    for virtual, physical, error in (
        ([], {}, TypeError),
        ({good: (1, 2, 3, 4)}, {}, TypeError),
        ({("x",): impl.Counts()}, {}, TypeError),
    ):
        with pytest.raises(error, match="virtual/physical"):
            impl.module.columns((virtual, physical))
    with pytest.raises(TypeError, match="source"):
        impl.module.columns([{}, {}])


def test_community_id_column_is_community_id(impl):
    core = impl.Core()
    packets = _packets(300, seed=5)
    core.update_tx_virtual_batch(packets)
    core.update_tx_physical("100.64.0.1", ("198.51.100.9", 41641), 120)
    window = core.cut()
    virtual, physical = window.to_dicts()
    cols = impl.module.columns(window, True)
    table = arrow._from_columns(cols, 0, 1, community_id=True, seed=7)
    ids = dict(
        zip(
            zip(
                table.column("src_addr").to_pylist(),
                table.column("src_port").to_pylist(),
                table.column("dst_addr").to_pylist(),
                table.column("dst_port").to_pylist(),
                table.column("traffic").to_pylist(),
            ),
            table.column("communityId").to_pylist(),
        )
    )
    for conn in virtual:
        key = (
            str(conn.src.addr),
            conn.src.port,
            str(conn.dst.addr),
            conn.dst.port,
            "virtual",
        )
        assert ids[key] == connstats.community_id(conn, seed=7)
    for conn in physical:
        key = (
            str(conn.src.addr),
            conn.src.port,
            str(conn.dst.addr),
            conn.dst.port,
            "physical",
        )
        assert ids[key] is None


def test_parquet_round_trip_and_pandas(tmp_path):
    pytest.importorskip("pandas")
    core = connstats._impl.core.Core(track_times=True)
    core.update_tx_virtual_batch(_packets(500))
    window = core.cut()
    table = arrow.window_table(window, 10, 20, community_id=True)
    path = tmp_path / "w.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    assert back.equals(table)
    frame = back.to_pandas()
    virtual, _ = window.to_dicts()
    assert int(frame["tx_packets"].sum()) == sum(c.tx_packets for c in virtual.values())
    assert str(frame["window_start"].dtype) == "datetime64[ns, UTC]"


def test_statistics_dump_to_arrow(impl):
    tables = []
    stats = impl.Statistics(
        dump=lambda *window: tables.append(arrow.table(*window)),
        max_period=60,
        track_times=True,
    )
    try:
        stats.update_tx_virtual_batch(_packets(200, seed=3))
    finally:
        stats.shutdown()
    (table,) = tables
    assert table.column_names[-2:] == ["first_seen", "last_seen"]
    assert sum(table.column("tx_packets").to_pylist()) == 200


def test_vni_column_is_each_connections_vni(impl):
    """``vni=True``: the VNI of a decapsulated tunnel row, null on the others
    (on both cores' values, and on the other core's through its own columns)."""
    m = impl.module

    @SETTINGS
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([6, 17]),
                st.integers(1, 65535),
                st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
                st.booleans(),
            ),
            max_size=30,
        )
    )
    def check(rows):
        virtual: dict = {}
        physical: dict = {}
        for proto, port, vni, is_physical in rows:
            conn = m.Connection(
                proto,
                m.AddrPort(IPv4Address("10.0.0.1"), port),
                m.AddrPort(IPv6Address("2001:db8::2"), 4789),
                vni=vni,
            )
            (physical if is_physical else virtual)[conn] = m.Counts(1, port, 0, 0)
        if m is _fastparse_py and IS_COMPILED:
            cols = m.columns((virtual, physical), False)
            table = arrow._from_columns(
                cols, 0, 10, community_id=False, seed=0, vni=True
            )
        else:
            table = arrow.table(0, 10, virtual, physical, vni=True)
        want = [c.vni for c in virtual] + [c.vni for c in physical]
        assert table.column_names[-1] == "vni"
        assert table.schema.field("vni").type == pa.uint32()
        assert table.column("vni").to_pylist() == want
        assert table.column("tx_bytes").to_pylist() == [
            c.src.port for part in (virtual, physical) for c in part
        ]
        assert "vni" not in arrow.table(0, 10, virtual, physical).column_names

    check()


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["virtual", "physical"],
        ["a", None, "ccc", "", None, "é" * 3] * 5,
        [None] * 9,
    ],
)
def test_string_columns_built_from_buffers(values):
    from connstats.export.arrow import _strings

    column = _strings(pa, values)
    assert column.type == pa.string()
    assert column.to_pylist() == values
    assert column.null_count == values.count(None)
    column.validate(full=True)
