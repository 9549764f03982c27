"""Governance: identities, keys, the audit trail, the egress gate and spend caps."""
