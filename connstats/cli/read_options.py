"""``connstats read`` options for selecting, shaping and sorting the report.

Kept apart from :mod:`connstats.cli.main` so the parser of every subcommand stays
short: :func:`add_read_options` adds them, :func:`report_options` turns the
parsed arguments into :class:`connstats.cli.output.ReportOptions`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from .._protocols import protocol_number
from .filters import ConnectionFilter, parse_host, parse_net, parse_port
from .report import GROUPS, SORT_KEYS, TIME_COLUMNS, sort_column

T = TypeVar("T")


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser raising ValueError with a full message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _keep(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """Validate with ``parse`` but keep the text (ConnectionFilter parses it again)."""

    def convert(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    convert.__name__ = parse.__name__
    return convert


def add_read_options(parser: argparse.ArgumentParser) -> None:
    sel = parser.add_argument_group(
        "selection",
        "--host, --net, --port and --proto select connections as decoded (either "
        "endpoint may match; repeat an option for 'any of'; different options must "
        "all match); --bpf selects packets with a libpcap filter expression before "
        "counting, as tcpdump would.",
    )
    sel.add_argument(
        "--host",
        action="append",
        default=[],
        type=_keep(parse_host),
        metavar="ADDR",
        help="connections to or from this address",
    )
    sel.add_argument(
        "--net",
        action="append",
        default=[],
        type=_keep(parse_net),
        metavar="CIDR",
        help="connections to or from this network",
    )
    sel.add_argument(
        "--port",
        action="append",
        default=[],
        type=_keep(parse_port),
        metavar="PORT[-PORT]",
        help="connections with this source or destination port (or range)",
    )
    sel.add_argument(
        "--proto",
        action="append",
        default=[],
        type=_keep(protocol_number),
        metavar="NAME|NUMBER",
        help="IP protocol: tcp, udp, icmp, gre, esp, ospf, 47, ...",
    )
    sel.add_argument(
        "--bpf",
        metavar="EXPR",
        help="only packets this BPF expression accepts ('tcp port 443 and not "
        "host 10.0.0.1'); compiled by libpcap, which must be installed",
    )
    shape = parser.add_argument_group("rows")
    how = shape.add_mutually_exclusive_group()
    how.add_argument(
        "--conversations",
        action="store_true",
        help="one row per conversation: A->B and B->A merged, as tshark -z conv",
    )
    how.add_argument(
        "--group-by",
        choices=GROUPS,
        help="totals per host (address), per port (with protocol) or per protocol; "
        "host and port count each connection for both of its endpoints",
    )
    shape.add_argument(
        "--sort",
        type=_arg(sort_column),
        default="bytes",
        metavar="COLUMN",
        help=f"order rows by one of: {', '.join(SORT_KEYS)} (default: bytes; counts "
        "and rates largest first, names and first seen ascending)",
    )
    shape.add_argument(
        "--reverse", action="store_true", help="reverse the --sort order"
    )
    shape.add_argument(
        "--times",
        action="store_true",
        help="first/last seen (each connection's first and last packet, to the "
        "capture's own time resolution), duration, packets/s and bits/s per row "
        "(implied by sorting on those)",
    )
    shape.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="SECONDS",
        help=argparse.SUPPRESS,  # kept for old command lines: --times is exact now
    )


def _resolution(text: str) -> float:
    from .arguments import seconds as _seconds

    return _seconds(text)


def wants_times(args: argparse.Namespace) -> bool:
    return bool(args.times or args.sort in TIME_COLUMNS)


def connection_filter(args: argparse.Namespace) -> ConnectionFilter:
    return ConnectionFilter.from_text(args.host, args.net, args.port, args.proto)


def report_options(args: argparse.Namespace, default_top: int) -> Any:
    from .output import ReportOptions

    flt = connection_filter(args)
    if args.conversations:
        shape = "conversations"
    elif args.group_by:
        shape = args.group_by
    else:
        shape = "connections"
    return ReportOptions(
        top=args.top if args.top is not None else default_top,
        shape=shape,
        sort=args.sort,
        reverse=args.reverse,
        select=flt.predicate() if flt else None,
        times=wants_times(args),
        vni=bool(getattr(args, "decap", None)),
        community_id=bool(getattr(args, "community_id", False)),
    )
