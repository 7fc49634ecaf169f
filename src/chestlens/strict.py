"""The one strict pydantic base of chestlens' stored documents (bundle.json, reports, results)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A model that refuses fields it does not declare, so a misspelt or stale key fails on reading
    instead of being silently ignored."""

    model_config = ConfigDict(extra="forbid")
