"""How update_virtual/update_physical take their arguments.

The compiled core reads the arguments of these two methods in its own
METH_FASTCALL entry (src/core/methods.pxi, src/core/args.pxi): positional
calls and keywords spelled as the parameters are handled there, every other
call goes to the method Cython made; the common argument forms (AddrPort,
``(address, port)`` tuples of an ipaddress object, packed bytes, IPv4 text
or None, ``"a.b.c.d:port"`` text, small ints) are read in C and every other
value takes the checked path shared with the pure-Python core.  The oracle
is the pure-Python core (and ``ipaddress`` for the text): both cores must
count the same connections and raise the same errors for every spelling of
a call and every form of an argument.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

import pytest
from hostile import HugeV4, LyingInt, MyV4, MyV6
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables import extract, plain

import connstats
from connstats._impl import IS_COMPILED

ip = ipaddress.ip_address
U64 = 2**64 - 1


def outcome(impl: Any, method: str, args: tuple, kwargs: dict) -> Any:
    """What one call does on a fresh Statistics: the error, or the counts."""
    stats = impl.Statistics()
    try:
        getattr(stats, method)(*args, **kwargs)
    except Exception as exc:  # what is raised is the outcome
        counted = extract(stats)
        assert counted == ({}, {}), "a refused call counted something"
        return (type(exc), str(exc))
    return extract(stats)


def spellings(args: tuple, receive: Any) -> list[tuple[tuple, dict]]:
    """Every way of passing the same six arguments."""
    proto, src, dst, packets, nbytes = args
    names = ("proto", "src", "dst", "packets", "bytes", "receive")
    values = (*args, receive)
    out: list[tuple[tuple, dict]] = [
        (values, {}),
        (args, {"receive": receive}),
        ((proto, src, dst), {"packets": packets, "bytes": nbytes, "receive": receive}),
        ((), dict(zip(names, values))),
        ((), dict(reversed(list(zip(names, values))))),
        ((proto,), {"bytes": nbytes, "dst": dst, "src": src, "packets": packets,
                    "receive": receive}),
        # names made at run time are not the interned ones a call site has
        (args, {"".join(["rece", "ive"]): receive}),
    ]  # fmt: skip
    if receive is False:
        out += [
            (args, {}),
            ((proto, src), {"dst": dst, "packets": packets, "bytes": nbytes}),
        ]
    return out


@pytest.mark.parametrize("method", ["update_virtual", "update_physical"])
@pytest.mark.parametrize("receive", [False, True])
def test_every_spelling_of_a_call_counts_the_same(impl, method, receive):
    src, dst = impl.AddrPort(ip("10.1.0.1"), 1000), ("fd00::b", 443)
    rx = (0, 0, 3, 1500) if receive else (3, 1500, 0, 0)
    want = {(6, ip("10.1.0.1"), 1000, ip("fd00::b"), 443): rx}
    expected = (want, {}) if method == "update_virtual" else ({}, want)
    for args, kwargs in spellings((6, src, dst, 3, 1500), receive):
        assert outcome(impl, method, args, kwargs) == expected, (args, kwargs)


@pytest.mark.parametrize("method", ["update_virtual", "update_physical"])
def test_bad_spellings_raise_type_errors_on_both_cores(c_impl, py_impl, method):
    src, dst = ("10.1.0.1", 1), ("10.1.0.2", 2)
    bad = [
        ((6, src, dst, 1), {}, None),  # bytes missing
        ((6, src, dst), {"packets": 1}, None),
        ((), {}, None),
        ((6, src, dst, 1, 1, False, 0), {}, None),  # one too many
        ((6, src, dst, 1, 1), {"proto": 6}, "proto"),  # given twice
        ((6, src, dst, 1, 1, False), {"receive": False}, "receive"),
        ((6, src, dst, 1, 1), {"recieve": True}, "recieve"),  # unknown
        ((6, src, dst, 1), {"bytes": 1, "byte": 1}, "byte"),
        ((6, src, dst, 1, 1), {"".join(["pro", "to"]): 6}, "proto"),
    ]
    for args, kwargs, named in bad:
        results = [outcome(impl, method, args, kwargs) for impl in (c_impl, py_impl)]
        for kind, message in results:
            assert kind is TypeError, (args, kwargs, message)
            assert method in message, message
            if named is not None:
                assert repr(named) in message, message


def test_the_methods_keep_their_names_and_documentation(c_impl):
    # Statistics' methods are the compiled entries only where its base is the
    # compiled CountingMethods (not with CONNSTATS_NO_EXTENSIONS=1)
    classes = (c_impl.Statistics, c_impl.Core) if IS_COMPILED else (c_impl.Core,)
    for cls in classes:
        for name in ("update_virtual", "update_physical"):
            method = getattr(cls, name)
            assert method.__name__ == name
            assert "(self, proto, src, dst, packets, bytes, receive=False)" in (
                method.__doc__
            ), method.__doc__
            bound = getattr(c_impl.Statistics(), name)
            assert bound.__name__ == name


def test_unbound_calls_and_uninitialised_instances(impl):
    stats = impl.Statistics()
    impl.Statistics.update_virtual(stats, 6, ("10.0.0.1", 1), ("10.0.0.2", 2), 1, 10)
    impl.Statistics.update_physical(
        stats, 17, ("10.0.0.1", 1), ("10.0.0.2", 2), 1, 10, receive=True
    )
    assert extract(stats) == (
        {(6, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2): (1, 10, 0, 0)},
        {(17, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2): (0, 0, 1, 10)},
    )
    bare = impl.Statistics.__new__(impl.Statistics)
    for spelled in ({}, {"receive": True}):
        with pytest.raises(RuntimeError, match="__init__ was not called"):
            bare.update_virtual(6, ("10.0.0.1", 1), ("10.0.0.2", 2), 1, 10, **spelled)


def test_core_methods_take_the_same_calls(c_impl, py_impl):
    """The cores' own methods (Statistics stores them on 3.14t) agree too."""
    src, dst = ("10.1.0.1", 5), "10.1.0.2:80"
    calls = [
        ((6, src, dst, 1, 10), {}),
        ((6, src, dst, 1, 10, True), {}),
        ((6, src, dst), {"packets": 2, "bytes": 20, "receive": True}),
        ((6, src, dst, 1), {}),
        ((6, src, dst, -1, 10), {}),
    ]
    for method in ("update_virtual", "update_physical"):
        for args, kwargs in calls:
            got = []
            for impl in (c_impl, py_impl):
                core = impl.Core()
                try:
                    getattr(core, method)(*args, **kwargs)
                except (TypeError, ValueError) as exc:
                    got.append(type(exc))
                    assert core.cut() is None  # nothing counted
                    continue
                virtual, physical = core.cut().to_dicts()
                got.append((plain(virtual), plain(physical)))
            assert got[0] == got[1], (method, args, kwargs)


# -- argument forms ----------------------------------------------------------

ADDRESSES = ["10.1.0.1", "0.0.0.0", "255.255.255.255", "100.64.0.1",
             "fd00::b", "::", "::ffff:10.1.0.1", "fe80::1", "ffff:" * 7 + "ffff"]  # fmt: skip


def forms(impl: Any, text: str, port: int) -> list[Any]:
    address = ip(text)
    out = [
        impl.AddrPort(address, port),
        (address, port),
        (text, port),
        (address.packed, port),
        (bytearray(address.packed), port),
        (str(address), LyingInt(port)),
        (MyV4(text) if address.version == 4 else MyV6(text), port),
        f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}",
    ]
    if address.version == 6:
        out.append((ipaddress.IPv6Address(f"{address}%eth0"), port))  # scope dropped
    return out


@pytest.mark.parametrize("text", ADDRESSES)
def test_every_endpoint_form_counts_its_address(impl, text):
    other = impl.AddrPort(ip("192.0.2.1"), 53)
    for port in (0, 1, 65535):
        for form in forms(impl, text, port):
            stats = impl.Statistics()
            stats.update_virtual(17, form, other, 1, 10)
            stats.update_virtual(17, other, form, 1, 10, receive=True)
            stats.update_physical(17, form, form, 2, 20)
            assert extract(stats) == (
                {(17, ip(text), port, ip("192.0.2.1"), 53): (1, 10, 0, 0),
                 (17, ip("192.0.2.1"), 53, ip(text), port): (0, 0, 1, 10)},
                {(17, ip(text), port, ip(text), port): (2, 20, 0, 0)},
            ), form  # fmt: skip


def _without_init(cls: type, value: Any = None) -> Any:
    address = object.__new__(cls)
    if value is not None:
        address._ip = value
    return address


def hostile_addresses() -> list[Any]:
    """Address objects whose private value is missing or wrong."""
    return [
        _without_init(ipaddress.IPv4Address),
        _without_init(ipaddress.IPv6Address),
        _without_init(ipaddress.IPv4Address, -1),
        _without_init(ipaddress.IPv4Address, 2**32),
        _without_init(ipaddress.IPv4Address, 2**64),
        _without_init(ipaddress.IPv4Address, "10.0.0.1"),
        _without_init(ipaddress.IPv4Address, True),
        _without_init(ipaddress.IPv4Address, LyingInt(7)),
        _without_init(ipaddress.IPv6Address, -1),
        _without_init(ipaddress.IPv6Address, 2**128),
        _without_init(ipaddress.IPv6Address, 2**128 - 1),
        _without_init(ipaddress.IPv6Address, 1.5),
        _without_init(ipaddress.IPv6Address, LyingInt(2**100)),
        HugeV4("10.0.0.1"),
    ]


def test_address_objects_with_a_wrong_value_are_judged_as_the_twin_does(
    c_impl, py_impl
):
    dst = ("10.0.0.2", 2)
    for address in hostile_addresses():
        for method in ("update_virtual", "update_physical"):
            results = [
                outcome(impl, method, (6, (address, 1), dst, 1, 1), {})
                for impl in (c_impl, py_impl)
            ]
            assert results[0] == results[1], (address, results)


OCTETS = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["", "00", "01", "007", "0000", "1000", "٣", "1 ", "+1", "0x1"]),
)
IPV4_LIKE = st.lists(OCTETS, min_size=1, max_size=6).map(".".join)
TEXTS = st.one_of(
    IPV4_LIKE,
    st.text(alphabet="0123456789.:[]abf%", max_size=24),
    st.sampled_from(["::1", "fd00::1", "[::1]", "1.2.3.4%eth0", "::ffff:1.2.3.4"]),
)
PORT_TEXTS = st.one_of(
    st.integers(0, 70000).map(str),
    st.sampled_from(["", "00080", "0", "65536", "99999999999999999999", "８０", "-1"]),
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=TEXTS, port=PORT_TEXTS, as_tuple=st.booleans())
def test_address_text_is_read_as_ipaddress_reads_it(
    c_impl, py_impl, text, port, as_tuple
):
    """(text, port) and "text:port": both cores, and ipaddress, agree."""
    src = (text, int(port)) if as_tuple and port.isascii() and port.isdigit() else (
        f"{text}:{port}"
    )  # fmt: skip
    dst = ("10.0.0.2", 2)
    results = [outcome(impl, "update_virtual", (6, src, dst, 1, 1), {}) for impl in (c_impl, py_impl)]  # fmt: skip
    assert results[0] == results[1], (src, results)
    if isinstance(src, tuple):
        try:
            address = ip(text)
        except ValueError:
            address = None
        valid = address is not None and src[1] <= 0xFFFF
        if valid:
            assert results[0] == (
                {(6, address, src[1], ip("10.0.0.2"), 2): (1, 1, 0, 0)},
                {},
            )
        else:
            assert results[0][0] is ValueError, results


ENDPOINT_FORMS = st.sampled_from(range(8))
CALL_SPELLINGS = st.sampled_from(range(7))


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 255),
            st.sampled_from(ADDRESSES + [None]),
            st.integers(0, 65535),
            st.sampled_from(ADDRESSES + [None]),
            st.integers(0, 65535),
            st.one_of(
                st.integers(0, 3000), st.sampled_from([U64, 2**63, 2**30, 2**62])
            ),
            st.one_of(
                st.integers(0, 3000), st.sampled_from([U64, 2**63, 2**30, 2**62])
            ),
            st.booleans(),
            ENDPOINT_FORMS,
            ENDPOINT_FORMS,
            CALL_SPELLINGS,
        ),
        max_size=25,
    ),
)
def test_cores_agree_on_every_form_and_spelling(c_impl, py_impl, ops):
    results = []
    for impl in (c_impl, py_impl):
        stats = impl.Statistics(
            ignore_destinations=connstats.TAILSCALE_SERVICE_ADDRESSES
        )
        for op in ops:
            physical, proto, sa, sp, da, dp, packets, nbytes, rx, sf, df, how = op

            def endpoint(addr: Any, port: int, form: int, impl: Any = impl) -> Any:
                if addr is None:
                    return impl.AddrPort(None, port) if form % 2 else (None, port)
                return forms(impl, addr, port)[form]

            args = (proto, endpoint(sa, sp, sf), endpoint(da, dp, df), packets, nbytes)
            call_args, kwargs = spellings(args, rx)[how]
            method = stats.update_physical if physical else stats.update_virtual
            method(*call_args, **kwargs)
        results.append(extract(stats))
    assert results[0] == results[1]


def test_threads_sharing_argument_objects_count_exactly(impl):
    """Borrowed arguments: threads passing the same objects lose nothing."""
    stats = impl.Statistics()
    peers = [impl.AddrPort(ip(f"10.9.0.{i + 1}"), 7000 + i) for i in range(8)]
    local = ("100.64.0.1", 41641)
    text = "100.64.0.2:53"
    rounds, nthreads = 400, 4
    errors: list[BaseException] = []
    start = threading.Barrier(nthreads)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                for peer in peers:
                    stats.update_virtual(6, local, peer, 1, 100)
                    stats.update_virtual(6, local, peer, 2, 10, receive=True)
                    stats.update_physical(
                        proto=17, src=text, dst=peer, packets=1, bytes=7
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    virtual, physical = extract(stats)
    stats.shutdown()
    n = rounds * nthreads
    assert virtual == {
        (6, ip("100.64.0.1"), 41641, p.addr, p.port): (n, 100 * n, 2 * n, 10 * n)
        for p in peers
    }
    assert physical == {
        (17, ip("100.64.0.2"), 53, p.addr, p.port): (n, 7 * n, 0, 0) for p in peers
    }
