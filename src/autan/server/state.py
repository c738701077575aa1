"""What the routes read: one `Server`, built by `create_app` and kept as `app.state.server`, which a
handler asks for as a dependency (`s: ServerDep`), and the lookup of a model a caller may use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from autan.guard.rails import GuardRails
from autan.http.auth import Access
from autan.http.errors import APIError
from autan.http.gate import MAX_BODY_BYTES
from autan.server.embeddings import Embedders
from autan.server.metrics import Metrics
from autan.server.served import ServedModel
from autan.store.db import Store

if TYPE_CHECKING:
    from autan.batches import Batches
    from autan.finetune.jobs import Jobs


@dataclass(frozen=True)
class Limits:
    max_waiting: int = 256  # queued requests per model before 429
    max_body_bytes: int = MAX_BODY_BYTES
    allowed_hosts: Sequence[str] = ()  # names the Host header may carry besides the machine's own


@dataclass(frozen=True)
class Server:
    """One app's models and the services around them. `served` is shared, not copied: a fine-tune
    joins it when its job ends. With a `store`, also the fine-tuning `jobs` and the `batches`."""

    served: dict[str, ServedModel]
    access: Access
    metrics: Metrics
    limits: Limits
    rails: GuardRails
    embedders: Embedders
    log_prompts: bool = False
    store: Store | None = None
    jobs: Jobs | None = None
    batches: Batches | None = None


async def server(request: Request) -> Server:
    return request.app.state.server


ServerDep = Annotated[Server, Depends(server)]


def find(s: Server, name: str, request: Request) -> ServedModel:
    """The model `name`, if the caller (`v1_caller` has put it on the request) may use it; another
    account's fine-tune is not there for them, and is not named."""
    who = request.state.principal
    model = s.served.get(name)
    if model is None or not model.visible_to(who):
        shown = name if len(name) <= 100 else name[:100] + "..."
        available = ", ".join(n for n, m in list(s.served.items()) if m.visible_to(who))
        raise APIError(404, f"model '{shown}' is not served here; available: {available}")
    return model
