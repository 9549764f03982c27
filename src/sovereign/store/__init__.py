"""The one embedded database that memory, ledger, runs and audit share."""

from sovereign.store.database import Database

__all__ = ["Database"]
