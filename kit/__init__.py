"""Minsheng service kit: the runtime every service shares (not contracts; those live in `schema`)."""
