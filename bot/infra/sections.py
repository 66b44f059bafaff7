"""The base of every config section, apart from config.py so section models can live beside
the code they configure (e.g. `bot.cluster.policy.PolicyConfig`) without an import cycle."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
