"""Transforms of a finished report on its way into S3, as streams: what a vendor serves is not always
the file a person wants (a JSON document of records asked for as CSV). Any provider, hand-written or a
spec's hook, may use them; each keeps memory flat whatever the size.

- ``json_records``: a JSON document holding records, passed through unchanged or written as CSV.
"""
