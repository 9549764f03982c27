"""Accounting: the usage ledger, prices and budgets."""
