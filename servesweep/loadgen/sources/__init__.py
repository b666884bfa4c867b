"""Where a workload's requests come from: a registry of data sources, one module each.

A source turns a workload (servesweep.spec.WorkloadShape) into a maker of requests, called once per
request in order; each request is a `Prompt` (its text or chat messages, the prompt's token count as the
model's tokenizer counts it, and its max_tokens). Nothing is downloaded: files are read where the step runs.

| source | module | requests |
|---|---|---|
| synthetic | synthetic.py | prompts of exact token lengths, lengths fixed or drawn from a distribution |
| sharegpt | sharegpt.py | ShareGPT JSON/JSONL: the first human turn, output length from the reply |
| jsonl | jsonl.py | one {prompt, output_tokens?} per line |
| hf | hf.py | a local Hugging Face `datasets` directory (save_to_disk) or a Parquet file |
| shared-prefix | shared_prefix.py | N system prompts of P tokens shared by the requests, each with its own question |
| conversation | conversation.py | synthetic multi-turn conversations (turns after answers, lanes.py) |
| sharegpt-conversation | sharegpt.py | a ShareGPT file's conversations turn by turn, answers the server's |

To add one: a module with `build(context) -> maker`, and its name here (and in the spec's Literal).
"""

from __future__ import annotations

from collections.abc import Callable

# The types every source module imports live in base.py: the registry below imports the sources, the sources
# import base, and no circle runs through this __init__.
from servesweep.loadgen.datagen import PromptFactory
from servesweep.loadgen.sources.base import PromptMaker, SourceContext, SourceError
from servesweep.spec import WorkloadShape

__all__ = ["PromptMaker", "SourceContext", "SourceError", "request_source", "source_names"]


def _registry() -> dict[str, Callable[[SourceContext], PromptMaker]]:
    from servesweep.loadgen.sources import conversation, hf, jsonl, shared_prefix, sharegpt, synthetic

    return {"synthetic": synthetic.build, "sharegpt": sharegpt.build, "jsonl": jsonl.build, "hf": hf.build,
            "shared-prefix": shared_prefix.build, "conversation": conversation.build,
            "sharegpt-conversation": sharegpt.build_conversations}


def source_names() -> list[str]:
    return list(_registry())


def request_source(workload: WorkloadShape, tokenizer: PromptFactory, seed: int, max_model_len: int) -> PromptMaker:
    """The request maker of `workload`'s source."""
    builders = _registry()
    name = workload.source
    if name not in builders:
        raise SourceError(f"unknown data source {name!r}; known: {', '.join(builders)}")
    return builders[name](SourceContext(workload, tokenizer, seed, max_model_len))
