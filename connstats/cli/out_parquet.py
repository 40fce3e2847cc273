"""``--format parquet -o FILE``: one Parquet row group per window.

The rows are :func:`connstats.export.arrow.table`'s (one per connection,
``first_seen``/``last_seen`` always, ``communityId`` with ``--community-id``,
``vni`` with ``--decap``),
so the file loads into pandas, Polars or DuckDB as one table; the window
columns tell the windows apart.  Connection filters apply; ``--top N`` keeps
the N first rows in ``--sort`` order; ``--conversations``/``--group-by`` are
for the text formats.
"""

from __future__ import annotations

from typing import Any

from ..capture.windows import Window
from .arguments import Fail
from .filters import filter_table
from .output import ReportOptions, build_report
from .outstream import create_private


class ParquetWriter:
    """Writes each window as a row group of one Parquet file."""

    def __init__(
        self,
        path: str | None,
        top: int = 0,
        options: ReportOptions | None = None,
        *,
        community_id: bool = False,
    ) -> None:
        if path is None or path == "-":
            raise Fail("--format parquet writes a file: give it with -o FILE")
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise Fail(
                "--format parquet needs pyarrow: pip install 'connstats[arrow]'"
            ) from None
        from ..export import arrow

        self._arrow = arrow
        self._pq = pq
        self._path = path
        self._opts = options if options is not None else ReportOptions(top=top)
        if self._opts.shape != "connections":
            raise Fail(
                "--format parquet writes connections: no --conversations or --group-by"
            )
        self._community_id = community_id
        self._vni = self._opts.vni
        self._schema = arrow.schema(
            times=True, community_id=community_id, vni=self._vni
        )
        try:
            # created 0600 as every file -o and -w write (outstream.PRIVATE_MODE)
            self._file = create_private(path, "wb")
        except OSError as exc:
            raise Fail(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            # Dictionaries for the columns that repeat (addresses, ports,
            # protocols); the counters and times rarely do: dictionaries
            # on every column took 63 ms instead of 41 for 153k rows, and
            # made the file 0.6% larger.
            self._writer = pq.ParquetWriter(
                self._file,
                self._schema,
                use_dictionary=[
                    name
                    for name in arrow.COLUMNS
                    if name in ("traffic", "proto") or name.endswith(("_addr", "_port"))
                ],
            )
        except BaseException:
            self._file.close()
            raise
        self.rows = 0

    def _tables(self, w: Window) -> tuple[dict[Any, Any], dict[Any, Any]]:
        opts = self._opts
        if opts.top:
            # the --sort order, as the text formats show it
            rep = build_report(w, ReportOptions(top=opts.top, sort=opts.sort,
                                                reverse=opts.reverse, select=opts.select,
                                                times=opts.times),
                               times=_times_of(w))  # fmt: skip
            virtual: dict[Any, Any] = {}
            physical: dict[Any, Any] = {}
            lookup = {**w.virtual, **w.physical}
            for row in rep.rows:
                conn = _connection_of(w, row)
                (physical if conn in w.physical else virtual)[conn] = lookup[conn]
            return virtual, physical
        if opts.select is not None:
            return filter_table(w.virtual, opts.select), filter_table(
                w.physical, opts.select
            )
        return w.virtual, w.physical

    def window(
        self,
        w: Window,
        title: str | None = None,
        times: dict[Any, list[int]] | None = None,
    ) -> None:
        if w.table is not None and not self._opts.top and self._opts.select is None:
            # every row: the columns come from the core's arrays, and no
            # Connection or Counts object is made
            table = self._arrow.window_table(
                w.table,
                w.start_ns,
                w.end_ns,
                community_id=self._community_id,
                vni=self._vni,
            )
        else:
            virtual, physical = self._tables(w)
            table = self._arrow.table(
                w.start_ns,
                w.end_ns,
                virtual,
                physical,
                community_id=self._community_id,
                vni=self._vni,
            )
        if table.num_rows == 0:
            return
        if table.schema != self._schema:
            # values without times (a source that does not keep them): null times
            table = self._arrow.with_schema(table, self._schema)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows

    def note(self, text: str) -> None:
        """Summaries are for people; Parquet leaves them out."""

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._file.close()


def _times_of(w: Window) -> dict[Any, list[int]]:
    return {
        conn: [counts.first_ns, counts.last_ns]
        for table in (w.virtual, w.physical)
        for conn, counts in table.items()
        if hasattr(counts, "first_ns")
    }


def _connection_of(w: Window, row: Any) -> Any:
    # A report row keeps the connection's proto and endpoints: the key in
    # the window's own dicts (the same Connection type).
    for table in (w.virtual, w.physical):
        for conn in table:
            cls = type(conn)
            if row.vni is not None:
                return cls(row.proto, row.a, row.b, row.vni)
            return cls(row.proto, row.a, row.b)
    raise AssertionError("a row of an empty window")  # pragma: no cover
