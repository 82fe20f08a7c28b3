"""A JSON document of records, read as it arrives: passed through unchanged, or written as CSV.

A vendor's result may be one JSON document holding every record (MyReports: up to 1,000,000 rows), so
it is never loaded whole: ijson reads the response's raw stream event by event, and memory stays at a few
``CHUNK_BYTES`` whatever the size. What is vendor-specific is said by the caller: where the records are
(``records``, a top-level key), where the CSV's columns are named (``columns``, an ijson prefix such as
``request.displayFields.item.fieldName``), which of the document's own top-level facts to remember as
they pass (``facts``), and the ``verdict`` on them, given before the stream ends so that a document that
says it is unfinished raises instead of being stored.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ijson
import requests
from ijson.common import JSONError, ObjectBuilder

from reportrelay.errors import DownloadInterrupted, ProviderProtocolError

CHUNK_BYTES = 64 * 1024
"""Bytes read from the provider, and CSV bytes handed on, at a time: memory stays at a few of these."""

_SCALARS = ("string", "number", "boolean")


class RawSource:
    """The response body as a file for ijson, decoded (gzip...) and, for pass-through, kept until taken."""

    def __init__(self, response: requests.Response, *, keep: bool) -> None:
        self._raw = response.raw
        self._keep = keep
        self._kept: list[bytes] = []
        self.kept_bytes = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        chunk = self._raw.read(size if size > 0 else CHUNK_BYTES, decode_content=True) or b""
        if self._keep and chunk:
            self._kept.append(chunk)
            self.kept_bytes += len(chunk)
        return chunk

    def take(self) -> bytes:
        """The bytes read since the last call, exactly as they arrived."""
        taken = b"".join(self._kept)
        self._kept.clear()
        self.kept_bytes = 0
        return taken


class JsonRecords:
    """One pass over a document of records: its records one at a time, and the facts around them.

    ``label`` names the document in errors ("request r-1"); ``facts`` maps a top-level key to the name
    its first scalar value is kept under in ``self.facts``; ``verdict`` raises when the facts say the
    document must not be stored; ``log`` is the vendor's logger, for what is left out of a CSV.
    """

    def __init__(
        self,
        source: RawSource,
        label: str,
        *,
        records: str = "data",
        columns: str | None = None,
        facts: Mapping[str, str] | None = None,
        verdict: Callable[[JsonRecords], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self._source = source
        self.label = label
        self._records_key = records
        self._columns_prefix = columns
        self._fact_names = dict(facts or {})
        self._verdict = verdict
        self._log = log or logging.getLogger(__name__)
        self.display_fields: list[str] = []
        self.facts: dict[str, Any] = {}
        self.records = 0

    def json_chunks(self) -> Iterator[bytes]:
        """The document's bytes unchanged, handed on as they are parsed.

        The verdict is given before the iterator ends, so a bad one raises instead of ending the stream and
        the upload is never completed (whether or not the bytes holding the facts were already handed on).
        """
        for _ in self._each_record():
            if self._source.kept_bytes >= CHUNK_BYTES:
                yield self._source.take()
        self._source.read()  # anything after the document (whitespace) belongs to the file too
        self._judge()
        if rest := self._source.take():
            yield rest

    def csv_chunks(self) -> Iterator[bytes]:
        """One CSV row per record (RFC 4180 quoting, UTF-8), header first, handed on in chunks.

        The columns are the document's display fields, else the first record's keys. Fields a record
        lacks are empty cells; fields outside the columns are left out (and named in the log).
        """
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")  # None is written as an empty cell
        columns: list[str] | None = None
        left_out: set[str] = set()
        for record in self._each_record():
            if record is None:
                continue
            if columns is None:
                columns = list(self.display_fields) or list(record)
                known = set(columns)
                writer.writerow(columns)
            if self.records <= 1000:  # a sample is enough to name them in the log
                left_out.update(record.keys() - known)
            writer.writerow([record.get(column) for column in columns])
            if text.tell() >= CHUNK_BYTES:
                yield text.getvalue().encode("utf-8")
                text.seek(0)
                text.truncate()
        if columns is None and self.display_fields:
            writer.writerow(self.display_fields)  # no records: the header alone
        if left_out:
            self._log.info(
                "fields outside the report's display fields are left out of the CSV",
                extra={"document": self.label, "fields": sorted(left_out)[:20]},
            )
        self._judge()
        if text.tell():
            yield text.getvalue().encode("utf-8")

    def _judge(self) -> None:
        if self._verdict is not None:
            self._verdict(self)

    def _each_record(self) -> Iterator[dict[str, Any] | None]:
        """Each record once complete; None after other events, so bytes can flow meanwhile.

        Record values are ready for a CSV cell: booleans as true/false, objects and lists as JSON text.
        ``basic_parse`` (no prefixes) keeps the per-field work small; the path is tracked here instead,
        outside records only.
        """
        path: list[str] = []  # like ijson's prefixes: map keys, and "item" inside arrays
        record: dict[str, Any] | None = None
        key = ""
        nested: ObjectBuilder | None = None
        depth = 0
        records_path = [self._records_key, "item"]
        try:
            for event, value in ijson.basic_parse(self._source, buf_size=CHUNK_BYTES):
                if record is not None:
                    if nested is not None:  # a field holding an object or a list
                        nested.event(event, value)
                        depth += event in ("start_map", "start_array")
                        depth -= event in ("end_map", "end_array")
                        if depth == 0:
                            record[key] = json.dumps(nested.value, ensure_ascii=False, default=float)
                            nested = None
                    elif event == "map_key":
                        key = value
                    elif event == "end_map":
                        self.records += 1
                        yield record
                        record = None
                    elif event == "boolean":
                        record[key] = "true" if value else "false"
                    elif event in ("start_map", "start_array"):
                        nested, depth = ObjectBuilder(), 1
                        nested.event(event, value)
                    else:
                        record[key] = value
                    continue
                if event == "map_key":
                    path[-1] = value
                    continue
                in_records = path == records_path
                if event == "start_map":
                    if in_records:
                        record = {}
                        continue
                    path.append("")
                elif event == "start_array":
                    path.append("item")
                elif event in ("end_map", "end_array"):
                    path.pop()
                elif in_records:
                    raise ProviderProtocolError(
                        f"download report results: {self._records_key}[] of {self.label} holds a {event}, "
                        "not records"
                    )
                else:
                    self._note(".".join(path), event, value)
                yield None
        except JSONError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if "premature EOF" in reason or "Incomplete JSON content" in reason:
                raise DownloadInterrupted(
                    f"download report results: the document of {self.label} ended after "
                    f"{self.records} records; nothing was stored"
                ) from None
            raise ProviderProtocolError(
                f"download report results: the document of {self.label} is not valid JSON "
                f"({reason}); nothing was stored"
            ) from None

    def _note(self, prefix: str, event: str, value: Any) -> None:
        """Remember the column names and the document's own facts as their keys pass by."""
        if prefix == self._columns_prefix and event == "string":
            self.display_fields.append(value)
        name = self._fact_names.get(prefix)
        if name is not None and event in _SCALARS and self.facts.get(name) in (None, ""):
            self.facts[name] = value
