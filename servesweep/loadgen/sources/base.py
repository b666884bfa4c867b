"""What every data source shares: the request maker's type, the context a source is built from, its error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servesweep.loadgen.client import Prompt
from servesweep.loadgen.datagen import PromptFactory
from servesweep.spec import WorkloadShape

PromptMaker = Callable[[int], Prompt]  # (the point's input_tokens, unused by most sources) -> the next request


class SourceError(ValueError):
    """A data source that cannot give requests (missing file, no prompt within the length bounds)."""


@dataclass(frozen=True)
class SourceContext:
    """What a source may use: the workload, the served model's tokenizer, a seed, the server's context."""

    workload: WorkloadShape
    tokenizer: PromptFactory
    seed: int
    max_model_len: int
