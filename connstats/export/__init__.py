"""Export connstats windows to flow collectors.

:class:`IPFIXExporter` sends each window as IPFIX (RFC 7011) data records to
a collector such as nfdump's ``nfcapd`` or pmacct's ``nfacctd``; pass it as
``Statistics(dump=...)``.
"""

from __future__ import annotations

from ._exporter import IPFIXExporter, parse_collector

__all__ = ["IPFIXExporter", "parse_collector"]
