"""Hash lists from the ``threatexchange`` package's signal exchanges (an optional dependency).

``sample`` is its static exchange (``StaticSampleSignalExchangeAPI``): the example signals each of its
signal types ships, benign test hashes for trying a bank end to end.  It runs in this process and reaches
no network.  :func:`parsed_from_deltas` turns any exchange's fetched deltas into rows, so a configured
exchange can feed the same import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from childshield.banks.errors import BankError
from childshield.banks.formats import Parsed, RowError, SignalRow, from_tx_name, normalize_signal

EXCHANGES = ("sample",)


class ExchangeUnavailable(BankError):
    """The exchange is unknown, or the ``threatexchange`` package is not installed."""


def parsed_from_deltas(deltas: Iterable[Any]) -> Parsed:
    """Rows of fetched deltas (``FetchDelta.updates``: {(signal type, signal): metadata or None}).

    Each update is numbered from 1 in fetch order, as a line would be; a ``None`` (a removal upstream) is
    not imported; signal types childshield does not match (URLs, text, ...) are reported and skipped."""
    parsed = Parsed()
    number = 0
    for delta in deltas:
        updates: Mapping[tuple[str, str], Any] = delta.updates
        for (type_name, signal), metadata in updates.items():
            number += 1
            if metadata is None:
                continue
            try:
                kind, value = normalize_signal(from_tx_name(type_name), signal)
            except ValueError as exc:
                parsed.errors.append(RowError(number, f"{type_name}: {exc}"))
                continue
            parsed.rows.append(SignalRow(number, kind, value))
    return parsed


def fetch_exchange(name: str) -> Parsed:
    """Fetch every signal of a ``threatexchange`` exchange that childshield can match (PDQ, MD5)."""
    if name not in EXCHANGES:
        raise ExchangeUnavailable(f"unknown exchange {name[:60]!r}; known: {', '.join(EXCHANGES)}")
    try:
        from threatexchange.exchanges.impl.static_sample import StaticSampleSignalExchangeAPI
        from threatexchange.signal_type.md5 import VideoMD5Signal
        from threatexchange.signal_type.pdq.signal import PdqSignal
    except ImportError:
        raise ExchangeUnavailable(
            "the threatexchange package is needed: pip install 'childshield[exchange]'"
        ) from None
    api = StaticSampleSignalExchangeAPI()
    return parsed_from_deltas(api.fetch_iter([PdqSignal, VideoMD5Signal], None))
