"""Service settings, read from ``ZHENPING_*`` environment variables.

Every knob of the scoring service lives here with its default and unit; the
rest of ``api/`` reads them from one :class:`Settings` object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The model shipped inside the package (model/default is package data).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model" / "default"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _split_csv(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


class Settings(BaseSettings):
    """Configuration of the scoring service.

    Each field is read from ``ZHENPING_<FIELD>`` (case-insensitive), e.g.
    ``ZHENPING_MAX_COMMENTS=64``. Invalid values stop the service at start with
    the field named.

    Example:
        >>> Settings(max_comments=64, api_keys="k1,k2").api_keys
        ['k1', 'k2']
    """

    model_config = SettingsConfigDict(env_prefix="ZHENPING_", extra="ignore", validate_default=True)

    model_dir: Path = DEFAULT_MODEL_DIR  # exported scorer directory to serve
    backend: Literal["torch", "onnx"] = "torch"  # inference runtime
    onnx_fallback: bool = False  # backend=onnx and the ONNX model fails to load: use torch instead of refusing to start
    host: str = "127.0.0.1"  # `zhenping serve` bind address
    port: int = Field(8000, ge=0, le=65535)  # `zhenping serve` port
    max_comments: int = Field(256, gt=0)  # comments per request; more is a 413
    max_chars: int = Field(2000, gt=0)  # characters per comment (before normalisation); more is a 422
    max_body_bytes: int = Field(1 << 20, gt=0)  # request body bytes, checked before parsing; more is a 413
    max_batch_tokens: int = Field(8192, gt=0)  # padded tokens per forward pass (texts x longest text)
    max_wait_ms: float = Field(5.0, ge=0)  # how long the first queued text waits for others to join its batch
    queue_size: int = Field(4096, gt=0)  # texts waiting for the model; more is a 429
    cache_size: int = Field(10000, ge=0)  # LRU entries of (model version, normalised text); 0 disables
    api_keys: Annotated[list[str], NoDecode] = []  # comma-separated; empty: no authentication
    cors_origins: Annotated[list[str], NoDecode] = []  # comma-separated origins, or "*"; empty: CORS off
    log_text: bool = False  # false: comment text never appears in logs
    num_threads: int = Field(0, ge=0)  # torch intra-op threads; 0: the library default
    log_level: str = "info"  # critical, error, warning, info or debug

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return _split_csv(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value):
        level = str(value).strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level

    @model_validator(mode="after")
    def _queue_holds_a_request(self):
        # A request's texts enter the queue together; a queue smaller than the
        # largest request would turn every full-size request into a 429.
        if self.queue_size < self.max_comments:
            raise ValueError(
                f"queue_size ({self.queue_size}) must be >= max_comments ({self.max_comments}), "
                "otherwise a request of max_comments texts could never be queued"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        """Whether scoring routes require an API key."""
        return bool(self.api_keys)
