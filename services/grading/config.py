"""Grading settings (env prefix GRADING_; platform-wide values from MINSHENG_*)."""

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class GradingSettings(ServiceSettings):
    """Everything grading reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="GRADING_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "grading"

    port: int = 8002
    # The trained category model (`python -m services.grading.cli train`); none: the taxonomy's cold start.
    model_path: Path | None = None
    # The routing learned from the city's replies (`cli train-routing`); none: the rules alone.
    route_model_path: Path | None = None
    # Reload the bundle when its files change (seconds between checks; 0: only the admin call reloads).
    bundle_watch_seconds: float = 0.0
    # Supervision (督办): seconds between the scheduler's rounds (0: no background rounds; the admin
    # call still runs one), clocks per transaction, and how long its lease lasts without renewal.
    supervision_poll_seconds: float = 5.0
    supervision_batch_size: int = 500
    supervision_lease_seconds: float = 60.0

    def resolved_model_path(self) -> Path:
        """The model file: the setting, or var/models/grading-category.pkl."""
        return self.model_path or self.var_dir / "models" / "grading-category.pkl"

    def resolved_route_model_path(self) -> Path:
        """The routing model file: the setting, or var/models/grading-routing.pkl."""
        return self.route_model_path or self.var_dir / "models" / "grading-routing.pkl"
