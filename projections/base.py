"""What the runner needs from a read model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from sqlalchemy import Connection, Table

Handler = Callable[[int, Any], None]


class Projection(ABC):
    """A read model fed from the notification log.

    The runner decodes each record once and calls the handler registered for the event's
    class with ``(notification_id, event)``. Handlers only change memory; :meth:`flush` then
    writes what the batch changed, inside the transaction that also moves the tracked
    position. After a failed batch the runner discards the memory state and calls
    :meth:`load` again, so the tables are the only truth.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]

    @abstractmethod
    def handlers(self) -> Mapping[type, Handler]:
        """Event class -> handler. Classes not listed are ignored (exact class match)."""

    @abstractmethod
    def load(self, conn: Connection) -> None:
        """Replace the memory state with what the tables hold."""

    @abstractmethod
    def flush(self, conn: Connection) -> None:
        """Write what changed since the last flush or load."""
