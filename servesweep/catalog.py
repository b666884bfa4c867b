"""Accelerator catalog: GKE GPU machine types with spec-sheet performance and on-demand list prices.

The shipped catalog is ``servesweep/data/accelerators.yaml`` (versioned by ``catalog_version``). A user
file, given explicitly or through ``$SERVESWEEP_CATALOG``, is merged over it: accelerators by name, their
machines by ``machine_type``, so a team can correct one price without copying the whole file.

Units: memory in decimal GB (1e9 bytes, as spec sheets state it), bandwidth in GB/s (the GPU-to-GPU link:
per GPU, each way), compute in dense TFLOPS (TOPS for int8), all-reduce latency in microseconds, prices in USD
per machine-hour.

Pricing models (`PRICINGS`): a machine's own ``price_per_hour`` is on-demand; ``spot``, ``cud_1y`` and ``cud_3y``
(1- and 3-year committed use) are optional prices of their own, each with its source and the date it was read.
``Catalog.with_pricing`` gives the catalog whose ``price_per_hour`` is the chosen model's, so everything that
costs (the views' ``prices`` table, the planner) follows one choice; a machine without that price is unpriced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from servesweep.yamlfile import read_mapping

CATALOG_ENV = "SERVESWEEP_CATALOG"
Pricing = Literal["on-demand", "spot", "cud-1y", "cud-3y"]
PRICINGS: tuple[Pricing, ...] = ("on-demand", "spot", "cud-1y", "cud-3y")
_PRICE_FIELDS = {"spot": "spot", "cud-1y": "cud_1y", "cud-3y": "cud_3y"}
GB = 1e9
_PRICE_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the file and the offending field(s)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_date(value: str) -> str:
    if not _PRICE_DATE.match(value):
        raise ValueError("price_date must look like YYYY-MM or YYYY-MM-DD")
    return value


class Price(_Strict):
    """A price of one pricing model (spot, committed use) for a machine type, with where and when it was read."""

    price_per_hour: float | None = Field(..., gt=0, description="USD per machine-hour; null when unknown.")
    source: str = Field(..., min_length=1, description="Where the price was read (a URL or a document).")
    date: str = Field(..., description="When it was read: YYYY-MM or YYYY-MM-DD.")
    note: str = ""

    @field_validator("date")
    @classmethod
    def _date_shaped(cls, value: str) -> str:
        return _check_date(value)


class MachineType(_Strict):
    """One GKE node machine type and what it costs (price_per_hour: on-demand, or the pricing chosen)."""

    machine_type: str = Field(..., min_length=1)
    gpus: int = Field(..., ge=1, le=16)
    price_per_hour: float | None = Field(..., gt=0, description="USD per machine-hour; null when unknown.")
    price_source: str = Field(..., min_length=1)
    price_date: str
    price_note: str = ""
    pricing: Pricing = "on-demand"
    spot: Price | None = None
    cud_1y: Price | None = None
    cud_3y: Price | None = None

    @field_validator("price_date")
    @classmethod
    def _date_shaped(cls, value: str) -> str:
        return _check_date(value)

    def priced(self, pricing: Pricing) -> MachineType:
        """This machine with price_per_hour, source, date and note of `pricing` (unpriced when it has none)."""
        if pricing == "on-demand":
            return self
        price: Price | None = getattr(self, _PRICE_FIELDS[pricing])
        if price is None:
            return self.model_copy(update={"pricing": pricing, "price_per_hour": None, "price_source": "none",
                                           "price_note": f"no {pricing} price in the catalog"})
        return self.model_copy(update={"pricing": pricing, "price_per_hour": price.price_per_hour,
                                       "price_source": price.source, "price_date": price.date,
                                       "price_note": price.note})

    @property
    def price_per_gpu_hour(self) -> float | None:
        return None if self.price_per_hour is None else self.price_per_hour / self.gpus


class AcceleratorType(_Strict):
    """A GPU type as GKE names it (``cloud.google.com/gke-accelerator``), with its machine types."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    gpu_memory_gb: float = Field(..., gt=0)
    hbm_bandwidth_gbps: float = Field(..., gt=0)
    bf16_tflops: float = Field(..., gt=0)
    fp8_tflops: float | None = Field(None, gt=0)
    int8_tops: float | None = Field(None, gt=0)
    interconnect: Literal["nvlink", "pcie"] | None = None
    interconnect_gbps: float | None = Field(None, gt=0, description="GPU-to-GPU bandwidth per GPU, each way, GB/s.")
    allreduce_latency_us: float | None = Field(None, ge=0, description="Fixed cost of one small all-reduce, us.")
    machines: list[MachineType] = Field(..., min_length=1)

    @field_validator("machines")
    @classmethod
    def _unique_machine_types(cls, value: list[MachineType]) -> list[MachineType]:
        names = [m.machine_type for m in value]
        if len(set(names)) != len(names):
            raise ValueError("machine_type must not repeat within an accelerator")
        return value

    @model_validator(mode="after")
    def _multi_gpu_has_a_link(self) -> AcceleratorType:
        # The planner costs tensor-parallel all-reduces over the link; a machine with several GPUs needs one.
        if self.max_gpus > 1 and (self.interconnect_gbps is None or self.allreduce_latency_us is None):
            raise ValueError("a machine with several GPUs needs interconnect_gbps and allreduce_latency_us")
        return self

    @property
    def max_gpus(self) -> int:
        return max(m.gpus for m in self.machines)

    @property
    def gpu_memory_bytes(self) -> float:
        return self.gpu_memory_gb * GB

    def machine_for(self, gpus: int) -> MachineType | None:
        """The machine a server with `gpus` GPUs lands on: fewest GPUs that hold it, then cheapest per GPU."""
        candidates = [m for m in self.machines if m.gpus >= gpus]
        if not candidates:
            return None
        return min(candidates, key=lambda m: (m.gpus, m.price_per_gpu_hour or float("inf")))

    def hourly_cost(self, gpus: int) -> float | None:
        """USD/hour for `gpus` GPUs: their share of the machine they land on.

        Charging a share (not the whole 8-GPU machine for a 1-GPU server) assumes other replicas fill the
        node, which is how a cost-per-token comparison across GPU counts stays fair.
        """
        machine = self.machine_for(gpus)
        if machine is None:
            raise CatalogError(f"{self.name}: no machine type has {gpus} GPUs (max {self.max_gpus})")
        per_gpu = machine.price_per_gpu_hour
        return None if per_gpu is None else per_gpu * gpus

    def peak_tflops(self, compute_dtype: str) -> float:
        """Dense peak for the dtype the matmuls run in; fp8/int8 fall back to bf16 where the GPU lacks them."""
        if compute_dtype == "fp8" and self.fp8_tflops:
            return self.fp8_tflops
        if compute_dtype == "int8" and self.int8_tops:
            return self.int8_tops
        if compute_dtype == "fp32":
            return self.bf16_tflops / 2  # TF32 tensor cores run at half the bf16 rate
        return self.bf16_tflops


class Catalog(_Strict):
    catalog_version: str = Field(..., min_length=1)
    accelerators: dict[str, AcceleratorType] = Field(..., min_length=1)
    pricing: Pricing = "on-demand"

    def with_pricing(self, pricing: str) -> Catalog:
        """The catalog priced by `pricing` (one of PRICINGS): every machine's price_per_hour is that model's."""
        if pricing not in PRICINGS:
            raise CatalogError(f"unknown pricing {pricing!r}; known: {', '.join(PRICINGS)}")
        chosen: Pricing = pricing
        accelerators = {name: entry.model_copy(update={"machines": [m.priced(chosen) for m in entry.machines]})
                        for name, entry in self.accelerators.items()}
        return self.model_copy(update={"pricing": chosen, "accelerators": accelerators})

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        # The YAML keys accelerators by name; copy the key in so each entry knows its own name.
        if isinstance(data, dict) and isinstance(data.get("accelerators"), dict):
            named = {}
            for key, entry in data["accelerators"].items():
                named[key] = {"name": key, **entry} if isinstance(entry, dict) else entry
            data = {**data, "accelerators": named}
        return data

    @model_validator(mode="after")
    def _keys_match_names(self) -> Catalog:
        for key, accelerator in self.accelerators.items():
            if key != accelerator.name:
                raise ValueError(f"accelerator {key!r} has name {accelerator.name!r}")
        return self

    def get(self, name: str) -> AcceleratorType:
        try:
            return self.accelerators[name]
        except KeyError:
            raise CatalogError(f"unknown accelerator {name!r}; known: {', '.join(self.accelerators)}") from None

    def price_per_gpu_hour(self, accelerator: str, machine_type: str | None = None) -> float | None:
        """USD per GPU-hour of a machine type (default: the 1-GPU placement's machine)."""
        entry = self.get(accelerator)
        if machine_type is None:
            machine = entry.machine_for(1)
        else:
            machine = next((m for m in entry.machines if m.machine_type == machine_type), None)
            if machine is None:
                raise CatalogError(f"{accelerator}: unknown machine type {machine_type!r}")
        return machine.price_per_gpu_hour if machine else None

    def hourly_cost(self, accelerator: str, gpus: int) -> float | None:
        return self.get(accelerator).hourly_cost(gpus)


# --- loading ---------------------------------------------------------------------------------------


def shipped_catalog_path() -> Path:
    return Path(str(resources.files("servesweep").joinpath("data/accelerators.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped catalog, with `path` (or ``$SERVESWEEP_CATALOG``) merged over it when given."""
    data = _read_yaml(shipped_catalog_path())
    source = "shipped catalog"
    override = path or os.environ.get(CATALOG_ENV)
    if override:
        data = _merge(data, _read_yaml(Path(override)))
        source = f"catalog {override} merged over the shipped one"
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        raise _format_error(error, source) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_mapping(path, "catalog", CatalogError)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "machines" and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = _merge_machines(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge_machines(base: list[Any], override: list[Any]) -> list[Any]:
    """Machines keyed by machine_type: an override entry updates its namesake or is appended."""
    merged = list(base)
    index = {m.get("machine_type"): i for i, m in enumerate(merged) if isinstance(m, dict)}
    for machine in override:
        name = machine.get("machine_type") if isinstance(machine, dict) else None
        if name in index:
            merged[index[name]] = {**merged[index[name]], **machine}
        else:
            merged.append(machine)
    return merged


def _format_error(error: ValidationError, source: str) -> CatalogError:
    lines = [f"invalid accelerator catalog ({source}):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {where}: {item['msg'].removeprefix('Value error, ')}")
    return CatalogError("\n".join(lines))


# --- cost helpers -------------------------------------------------------------------------------------


def cost_fields(row: Mapping[str, Any], catalog: Catalog) -> dict[str, float | None]:
    """Cost columns for a ``points`` row: $/hour for its accelerator_count, output tokens per $, $/M output tokens.

    Values are None when the row lacks throughput or the catalog lacks a price.
    """
    empty: dict[str, float | None] = {
        "cost_per_hour": None, "output_tokens_per_dollar": None, "usd_per_million_output_tokens": None,
    }
    accelerator = row.get("accelerator")
    if not accelerator or accelerator not in catalog.accelerators:
        return empty
    cost_per_hour = catalog.hourly_cost(accelerator, int(row.get("accelerator_count") or 1))
    throughput = row.get("output_token_throughput")
    if cost_per_hour is None or not throughput or throughput <= 0:
        return {**empty, "cost_per_hour": cost_per_hour}
    tokens_per_dollar = throughput * 3600 / cost_per_hour
    return {
        "cost_per_hour": cost_per_hour,
        "output_tokens_per_dollar": tokens_per_dollar,
        "usd_per_million_output_tokens": 1e6 / tokens_per_dollar,
    }


def prices_table(catalog: Catalog) -> pa.Table:
    """One row per machine type: register it in DuckDB to join prices onto ``points`` in SQL."""
    rows = [
        {
            "accelerator": accelerator.name,
            "machine_type": machine.machine_type,
            "gpus": machine.gpus,
            "price_per_hour": machine.price_per_hour,
            "price_per_gpu_hour": machine.price_per_gpu_hour,
            "price_source": machine.price_source,
            "price_date": machine.price_date,
            "catalog_version": catalog.catalog_version,
            "pricing": machine.pricing,
        }
        for accelerator in catalog.accelerators.values()
        for machine in accelerator.machines
    ]
    return pa.Table.from_pylist(rows, schema=_PRICES_SCHEMA)


_PRICES_SCHEMA = pa.schema(
    [
        ("accelerator", pa.string()), ("machine_type", pa.string()), ("gpus", pa.int32()),
        ("price_per_hour", pa.float64()), ("price_per_gpu_hour", pa.float64()), ("price_source", pa.string()),
        ("price_date", pa.string()), ("catalog_version", pa.string()), ("pricing", pa.string()),
    ]
)
