"""Export connstats windows to flow collectors and analysis tools.

:class:`IPFIXExporter` sends each window as IPFIX (RFC 7011) data records to
a collector such as nfdump's ``nfcapd`` or pmacct's ``nfacctd``; pass it as
``Statistics(dump=...)``.  :mod:`connstats.export.arrow` turns windows into
Arrow tables (pandas, Polars, DuckDB, Parquet), and
:mod:`connstats.export.community_id` computes Community IDs.

The exporters are imported on first use: ``import connstats`` loads
``community_id`` from here, and that must stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exporter import IPFIXExporter, parse_collector

__all__ = ["IPFIXExporter", "parse_collector"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _exporter

        return getattr(_exporter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
