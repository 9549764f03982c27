"""The router: which model serves a ``model: "auto"`` request — policy first (data class,
residency, licence, offline), then difficulty (instant vs thinking, reasoning budget, tier),
then cost, with fallbacks behind circuit breakers. Routed calls take the governed path."""
