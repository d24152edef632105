"""``[review]``: the sender self-service page linked from notices (see relay/review/)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from relay.settings_types import SECTION_CONFIG, ListenAddress

__all__ = ["SENDER_CHOICES", "ReviewSettings", "SenderChoice"]

SenderChoice = Literal["hidden", "split", "withdraw", "request"]
SENDER_CHOICES: tuple[SenderChoice, ...] = ("hidden", "split", "withdraw", "request")


class ReviewSettings(BaseModel):
    """The sender's page: where it is published, how its links are signed, what it offers.

    Off unless ``public_url`` is set.  The page is served on the admin
    listener, or on ``listen`` when that is given (e.g. to publish only it).
    """

    model_config = SECTION_CONFIG

    #: The address senders open (the notice's link starts with it), e.g. https://ccguard.example.org
    public_url: str | None = None
    #: Serve the sender page on its own listener instead of the admin one.
    listen: ListenAddress | None = None
    #: The HMAC-SHA256 key of the links (created, random and mode 0600, if missing);
    #: instances sharing it accept each other's links.
    token_key_file: str = "var/review-token.key"
    #: Seconds a link stays valid (default 72 hours).
    token_ttl: Annotated[float, Field(ge=60.0, le=90 * 86400.0)] = 72 * 3600.0
    #: What the sender may do from the page.
    sender_may: list[SenderChoice] = list(SENDER_CHOICES)
    #: Refused links (forged, expired, used) per client within a minute before it must wait.
    max_refusals: Annotated[int, Field(ge=1, le=1000)] = 5
    #: How often (seconds) an instance looks for undo holds whose time has come.
    delay_poll: Annotated[float, Field(gt=0.0, le=300.0)] = 5.0

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or " " in value:
            raise ValueError(
                "must be an http:// or https:// address, e.g. https://ccguard.example.org"
            )
        return value.rstrip("/")

    @property
    def enabled(self) -> bool:
        """Self-service is on when senders have an address to open."""
        return self.public_url is not None
