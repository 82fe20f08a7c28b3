"""DevExpress Report and Dashboard Server HTTP API (seed 003): run from ``specs/devexpress.json``.

The protocol is all data there: report exports (queue, status in any of its three shapes, result) and, as
the spec's ``dashboard_id`` variant, dashboard exports, whose answer is the file itself. This module only
keeps the name ``DevExpress`` for code that imports it (tests patch the adapter class by it): it is the
very class the provider registry builds from the spec.
"""

from __future__ import annotations

from reportrelay.providers.declarative import DeclarativeProvider, packaged_provider

DevExpress: type[DeclarativeProvider] = packaged_provider("devexpress")
