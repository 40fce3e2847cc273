"""The ``connstats`` command: per-connection traffic tables from captures.

``connstats read [FILE...]`` replays pcap/pcapng files (or the built-in
sample) through the counting core, with windows on the capture's own clock;
``connstats capture --interface IF`` counts live traffic on Linux.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from .arguments import (
    Fail,
    HelpFormatter,
    attach_optional_lists,
    cidr,
    count,
    positive,
    seconds,
    tunnels,
)
from .read_options import add_read_options

# -- parser ----------------------------------------------------------------------------

_READ_DESCRIPTION = """\
Count packets and bytes per connection in pcap or pcapng files (the format
is detected from the content; gzip, bzip2, xz and zstd files are read as
they are). With no FILE, read standard input when it is a pipe or a file
(tcpdump -w - | connstats read), else a small sample capture shipped with
connstats.
"""

_READ_EPILOG = """\
examples:
  connstats read                          the built-in sample (from a tty)
  tcpdump -i eth0 -w - | connstats read   what tcpdump writes to the pipe
  connstats read trace.pcapng --top 5     the five biggest connections
  connstats read trace.pcap --local 10.0.0.0/8 --max-period 60s
  tcpdump -i eth0 -w - | connstats read - --max-period 10 --format jsonl
  connstats read trace.pcap.gz --conversations --sort packets
  connstats read a.pcap b.pcapng --group-by host --total
  connstats read trace.pcap --proto udp --port 53 --times --format csv
  connstats read trace.pcap --bpf 'tcp port 443 and not host 10.0.0.1'
  connstats read overlay.pcap --decap     VXLAN, Geneve, GRE, ... opened

Windows follow the capture's timestamps: --max-period cuts a window when
that much capture time has passed since its first packet; --max-conns cuts
it when a new connection would exceed the bound. Bytes are IP bytes (from
the IP header on; link headers and Ethernet padding are not counted). Rows
labelled 'undecoded' (no addresses could be read), 'ip' (no usable
transport header) and 'fragment' (IP fragments after the first) are
explained under the table.
"""

_CAPTURE_DESCRIPTION = """\
Count packets and bytes per connection on a network interface, through a
memory-mapped AF_PACKET ring (Linux). Packets the host sends are tx,
packets it receives are rx; on loopback each packet counts once. Windows
are printed as they close, the last one when the capture ends (--duration,
--count, Ctrl-C or SIGTERM), with the kernel's drop count.
"""

_CAPTURE_EPILOG = """\
examples:
  sudo connstats capture -i eth0                 until Ctrl-C, one table
  sudo connstats capture -i any --max-period 10 --format jsonl
  sudo connstats capture -i wg0 --port 53 --duration 60 --total
  sudo connstats capture -i eth0 -w trace.pcapng --fail-on-drop

Exit status {dropped} with --fail-on-drop: the kernel dropped packets (the ring was
full); a larger --ring-size or a capture filter helps. Exit status 4: --export
could not send some flow records.
"""


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=("table", "jsonl", "csv", "parquet"),
        default="table",
        help="table: aligned columns for people (default); jsonl: one JSON object per "
        "window, with the field names of Tailscale's network log; csv: one header "
        "line, then one line per row of every window; parquet (with -o FILE): one "
        "row group per window, for pandas, Polars or DuckDB (needs pyarrow)",
    )
    group.add_argument(
        "--community-id",
        action="store_true",
        help="add each connection's Community ID v1 (the flow hash of Zeek, "
        "Suricata and Wireshark): a communityId field (jsonl) or column (csv, "
        "parquet)",
    )
    group.add_argument(
        "--total",
        action="store_true",
        help="one table for the whole run instead of one per window",
    )
    group.add_argument(
        "--top",
        type=count,
        metavar="N",
        help="show the N biggest connections by bytes (default: 20 in tables, all in "
        "jsonl; 0: all)",
    )
    group.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write to FILE instead of standard output (a new file is created "
        "readable by its owner only, mode 0600)",
    )
    group.add_argument(
        "--export",
        metavar="URL",
        help="also send every window as IPFIX flow records to a collector: "
        "ipfix://HOST:PORT (UDP) or ipfix+tcp://HOST:PORT. The connections the "
        "selection options keep are exported, all of them (--top, --sort and the "
        "row shapes change the tables only). Exit status 4 if any record could not "
        "be sent",
    )


def _add_window_options(parser: argparse.ArgumentParser, clock: str) -> None:
    group = parser.add_argument_group("windows")
    group.add_argument(
        "--max-period",
        type=seconds,
        metavar="SECONDS",
        help=f"end a window after this much {clock}: 10, 2.5, 500ms, 5m, 1h",
    )
    group.add_argument(
        "--max-conns",
        type=count,
        default=0,
        metavar="N",
        help="end a window when a new connection would make it hold more than N (0: no bound)",
    )


def _add_decap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decap",
        nargs="?",
        const=31,
        type=tunnels,
        metavar="LIST",
        help="open tunnels (all, or a list: vxlan,geneve,gre,ipip,mpls): the "
        "innermost packet counts as a connection, the tunnel packet as physical "
        "traffic between its endpoints, each with its VNI or key (a vni column); "
        "see docs/tunnels.md",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``connstats`` command; the documentation's command
    reference, its manual page and shell completion are generated from it."""
    parser = argparse.ArgumentParser(
        prog="connstats",
        description="Per-connection packet and byte counts from capture files and live "
        "interfaces, computed by the connstats core.",
        epilog="Run 'connstats COMMAND --help' for the options of a command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"connstats {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    read = commands.add_parser(
        "read",
        help="count the connections in pcap/pcapng files",
        description=_READ_DESCRIPTION,
        epilog=_READ_EPILOG,
        formatter_class=HelpFormatter,
    )
    read.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="capture files, '-' for standard input (the default when it is a pipe "
        "or a file)",
    )
    read.add_argument(
        "--local",
        action="append",
        type=cidr,
        default=[],
        metavar="CIDR",
        help="a local network (repeatable): packets to it count as received (rx), so "
        "both directions of a conversation merge into one connection, as a "
        "forwarder sees them. Default: every packet counts as sent (tx). A pcapng "
        "packet whose record says its direction (epb_flags, as 'connstats capture "
        "-w' and dumpcap write it) goes by that instead",
    )
    _add_decap_option(read)
    _add_window_options(read, "capture time (packet timestamps)")
    _add_output_options(read)
    add_read_options(read)

    from .capture import EXIT_DROPPED
    from .capture import add_arguments as _add_capture_arguments

    live = commands.add_parser(
        "capture",
        help="count live traffic on an interface (Linux; root or CAP_NET_RAW)",
        description=_CAPTURE_DESCRIPTION,
        epilog=_CAPTURE_EPILOG.format(dropped=EXIT_DROPPED),
        formatter_class=HelpFormatter,
    )
    _add_capture_arguments(live)
    live.add_argument(
        "--duration", type=seconds, metavar="SECONDS", help="stop after this long"
    )
    live.add_argument(
        "--count", "-c", type=positive, metavar="N", help="stop after N IP packets"
    )
    _add_decap_option(live)
    _add_window_options(live, "wall-clock time")
    _add_output_options(live)
    return parser


# -- entry point ---------------------------------------------------------------------------------


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when it makes one.

    With the ``completion`` extra (argcomplete) and the shell hook that
    ``register-python-argcomplete connstats`` prints, bash and zsh start the
    command with ``_ARGCOMPLETE`` set; any other run pays for one lookup.
    """
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (docs/cli.md, "Exit status").

    0 ok, 1 error, 2 usage, 3 kernel drops with capture --fail-on-drop, 4 flow
    records not exported, 130 Ctrl-C (read), 141 broken pipe.
    """
    parser = build_parser()
    _complete(parser)
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(attach_optional_lists(words, ("--decap",)))
    # Each command's module is imported only when it runs: `connstats --help`
    # and the other command start without it.
    handler: Callable[[argparse.Namespace], int] = importlib.import_module(
        f".{args.command}", __package__
    ).command
    from .outstream import EXIT_BROKEN_PIPE, OutputError, flush_stdout

    try:
        status = handler(args)
        failed = flush_stdout()
        if failed is not None:
            raise failed
        return status
    except Fail as exc:
        flush_stdout()
        print(f"connstats: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        flush_stdout()
        print("connstats: interrupted", file=sys.stderr)
        return 130
    except OutputError as exc:
        # `connstats read big.pcap | head`: the reader went away, which is
        # not an error; say nothing and exit as a tool killed by SIGPIPE.
        flush_stdout()
        if exc.broken_pipe:
            return EXIT_BROKEN_PIPE
        print(f"connstats: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        flush_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
