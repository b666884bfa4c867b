"""Typed report objects. Row models mirror the SQL views column for column (``columns()`` selects them)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from servesweep.spec import SLOSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ViewRow(_Strict):
    @classmethod
    def columns(cls) -> str:
        """The SELECT list that fills this model from its view."""
        return ", ".join(cls.model_fields)


class _ConfigRow(_ViewRow):
    """The columns every per-config view shares: which config, how it is labelled and compared."""

    config_id: str
    config_label: str
    comparison_group: str
    source: str
    accelerator: str | None
    accelerator_count: int | None


class PointSummary(_ConfigRow):
    """One counted point: what the charts plot (latency_by_batch joined with throughput_per_dollar_normalised)."""

    quantization: str | None
    batch_size: int
    point_id: str
    output_token_throughput: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    e2e_p99_ms: float | None
    output_tokens_per_dollar: float | None
    usd_per_million_output_tokens: float | None
    vs_baseline_best: float | None
    is_config_best: bool
    meets_slo: bool
    output_token_throughput_ci_low: float | None = None  # 95 % intervals (null: not measured, older lakes)
    output_token_throughput_ci_high: float | None = None
    ttft_p50_ci_low_ms: float | None = None
    ttft_p50_ci_high_ms: float | None = None
    ttft_p99_ci_low_ms: float | None = None
    ttft_p99_ci_high_ms: float | None = None
    tpot_p50_ci_low_ms: float | None = None
    tpot_p50_ci_high_ms: float | None = None
    tpot_p99_ci_low_ms: float | None = None
    tpot_p99_ci_high_ms: float | None = None
    p99_few_requests: bool | None = None
    noisy: bool | None = None


class IdealBatch(_ConfigRow):
    """A row of the ``ideal_batch`` view: the batch size a config should run at, or why none."""

    run_id: str
    model_name: str | None
    quantization: str | None
    server_kind: str | None
    input_tokens: int | None
    output_tokens: int | None
    sweep_mode: str | None
    meets_slo: bool
    reason: str
    ranked_by: str
    ideal_batch_size: int | None
    point_id: str | None
    output_token_throughput: float | None
    ttft_p99_ms: float | None
    tpot_p99_ms: float | None
    e2e_p99_ms: float | None
    output_token_throughput_ci_low: float | None
    output_token_throughput_ci_high: float | None
    goodput: float | None
    slo_attainment: float | None
    p99_few_requests: bool | None
    noisy: bool | None
    cost_per_hour: float | None
    output_tokens_per_dollar: float | None
    usd_per_million_output_tokens: float | None
    usd_per_million_input_tokens_split: float | None
    usd_per_million_output_tokens_split: float | None
    machine_type: str | None
    pricing: str | None
    price_source: str | None
    price_date: str | None
    tokens_per_dollar_vs_baseline: float | None
    tied_batch_sizes: list[int]
    max_throughput_batch_size: int
    max_output_token_throughput: float | None
    points_counted: int
    points_meeting_slo: int
    batch_sizes_tested: list[int]
    batch_sizes_meeting_slo: list[int]
    run_ids: list[str] = Field(default_factory=list, description="Runs whose points make up the series.")

    @property
    def placement(self) -> str:
        return f"{self.accelerator} x{self.accelerator_count or 1}"

    def tokens_per_dollar_interval(self) -> tuple[float, float] | None:
        """The 95 % interval of output_tokens_per_dollar (the throughput interval at the same price)."""
        low, high = self.output_token_throughput_ci_low, self.output_token_throughput_ci_high
        if low is None or high is None or not self.cost_per_hour:
            return None
        return low * 3600 / self.cost_per_hour, high * 3600 / self.cost_per_hour


class RunFingerprint(_ViewRow):
    """A row of the ``runs`` table: what one run measured on (definitions: servesweep/lake/schema.py)."""

    run_id: str
    servesweep_version: str | None
    git_commit: str | None
    git_dirty: bool | None
    spec_hash: str
    server_kind: str | None
    server_version: str | None
    server_image: str | None
    server_image_digest: str | None
    node_machine_type: str | None
    gpu_name: str | None
    gpu_count: int | None
    gpu_driver_version: str | None
    cuda_driver_version: str | None
    host_cpu_model: str | None
    host_cpu_count: int | None
    python_version: str | None
    os_platform: str | None
    notes: str | None


class PrefillDecode(_ConfigRow):
    """A row of the ``prefill_decode`` view."""

    input_tokens: int | None
    output_tokens: int | None
    low_batch_size: int
    ttft_p50_ms: float | None
    prefill_tokens_per_s: float | None
    tpot_p50_ms: float | None
    decode_tokens_per_s: float | None
    max_batch_size: int
    decode_tokens_per_s_per_sequence_max_batch: float | None
    decode_tokens_per_s_all_sequences_max_batch: float | None
    prefill_to_decode_ratio: float | None
    ttft_share_of_e2e: float | None
    workload_balance: str | None


class ParetoPoint(_ViewRow):
    """A row of the ``pareto_frontier`` view."""

    comparison_group: str
    latency_metric: str
    latency_ms: float
    output_token_throughput: float
    config_label: str
    source: str
    batch_size: int
    point_id: str
    usd_per_million_output_tokens: float | None
    meets_slo: bool


class MachineOption(_Strict):
    """One candidate GCE machine type for a comparison group's model and workload: does the model fit (the
    guide's rule: weights at most 80 % of each GPU's memory, the rest, 20 % or more, for the KV cache), on how
    many GPUs (tensor parallel where one is not enough), its throughput (measured in the lake, else predicted
    by the planner's roofline) and its cost per million tokens at the report's prices."""

    comparison_group: str
    series: str = Field(..., description="Machine series: G2, A2, A2 ultra, A3 High, A3 Mega, A3 Ultra, A4...")
    machine_type: str | None
    accelerator: str
    weight_dtype: str
    gpus: int = Field(..., description="GPUs per server (the tensor-parallel size).")
    gpus_per_machine: int | None
    fits: bool
    fit_reason: str
    weights_per_gpu_gb: float
    weight_limit_gb: float
    kv_share: float = Field(..., description="Share of GPU memory left for the KV cache (and activations).")
    max_sequences: int = Field(..., description="Sequences of the workload's length the KV cache holds.")
    source: str = Field(..., description="'measured' (the lake's ideal batch), 'predicted' (roofline) or 'none'.")
    batch_size: int | None = None
    output_token_throughput: float | None = None
    meets_slo: bool | None = None
    cost_per_hour: float | None = None
    usd_per_million_output_tokens: float | None = None
    usd_per_million_input_tokens: float | None = Field(None, description="Input tokens' share (TTFT / E2E).")
    usd_per_million_output_tokens_split: float | None = Field(None, description="Output tokens' share.")
    point_id: str | None = Field(None, description="The measured point (source 'measured').")


class VariantAccuracy(_ViewRow):
    """One accuracy row of a variant (the ``quantize_variants`` view's accuracy columns, the accuracy table's)."""

    accuracy_run_id: str
    task: str
    metric: str
    higher_is_better: bool
    value: float
    baseline_value: float | None
    delta: float | None
    delta_low: float | None
    delta_high: float | None
    threshold: float | None
    passed: bool | None


class QuantizeVariant(_Strict):
    """One quantization variant of a config: what its weights take, how many GPUs it needs (the planner), its
    throughput and cost at the ideal batch (ideal_batch) and its accuracy against the unquantized baseline."""

    comparison_group: str
    config_id: str
    config_label: str
    run_id: str
    accelerator: str | None
    accelerator_count: int | None
    quantization: str
    weight_dtype: str = Field(..., description="What the weights are stored in: the variant's, else the model's.")
    weight_bits: int = Field(..., description="Bits per weight of weight_dtype (16, 8 or 4).")
    weight_gb: float | None = Field(None, description="Weight memory, GB: the checkpoint's files, else the planner's.")
    weight_source: str = Field(..., description="'checkpoint' (runs.weight_bytes), 'planner' (parameters x bytes "
                                                "per weight, dummy weights) or 'none'.")
    gpus_needed: int | None = Field(None, description="The fewest GPUs of the accelerator that hold it (planner).")
    gpus_reason: str = ""
    meets_slo: bool
    ideal_batch_size: int | None
    output_token_throughput: float | None
    output_tokens_per_dollar: float | None
    usd_per_million_output_tokens: float | None
    accuracy: list[VariantAccuracy] = Field(default_factory=list)

    @property
    def placement(self) -> str:
        return f"{self.accelerator} x{self.accelerator_count or 1}"

    @property
    def accuracy_failed(self) -> list[VariantAccuracy]:
        return [row for row in self.accuracy if row.passed is False]

    @property
    def accuracy_passed(self) -> bool:
        """Every compared accuracy row is inside its threshold, and there is at least one."""
        compared = [row for row in self.accuracy if row.passed is not None]
        return bool(compared) and all(row.passed for row in compared)


class Question(StrEnum):
    QUANTIZE = "quantize?"
    MACHINE = "which machine type?"
    ACCELERATOR = "which GPU?"
    BATCH_SIZE = "which batch size?"
    WORKLOAD = "prefill- or decode-heavy?"


class Status(StrEnum):
    ANSWERED = "answered"
    SLO_NOT_MET = "slo_not_met"  # the data covers the question, and the answer is that nothing meets the SLO
    NOT_COVERED = "not_covered"  # these runs cannot answer it; `answer` says what to run


class Figure(_Strict):
    """One number behind a recommendation."""

    label: str
    value: float | None
    unit: str = ""


class Recommendation(_Strict):
    question: Question
    scope: str = Field(..., description="The comparison group (model, workload shape, source) it answers for.")
    status: Status
    answer: str
    figures: list[Figure] = Field(default_factory=list)


class Headline(_Strict):
    """The single answer for dashboards: the cheapest measured config within the SLO."""

    meets_slo: bool
    summary: str
    config_label: str | None = None
    ideal_batch_size: int | None = None
    output_token_throughput: float | None = Field(None, description="Output tok/s at the ideal batch (within SLO).")
    output_tokens_per_dollar: float | None = None
    usd_per_million_output_tokens: float | None = None
    max_output_token_throughput: float | None = Field(None, description="Best output tok/s ignoring the SLO.")


class Report(_Strict):
    run_ids: list[str]
    lake_uri: str
    generated_at: datetime
    slo: SLOSpec
    baseline_accelerator: str
    catalog_version: str
    pricing: str = "on-demand"
    prices_used: list[str] = Field(default_factory=list, description="Each price the costs used: machine, $/h, "
                                                                      "pricing, source, date.")
    headline: Headline
    recommendations: list[Recommendation]
    ideal_batches: list[IdealBatch]
    points: list[PointSummary]
    prefill_decode: list[PrefillDecode]
    pareto: list[ParetoPoint]
    fingerprints: list[RunFingerprint] = Field(default_factory=list)
    machine_options: list[MachineOption] = Field(default_factory=list)
    quantize_variants: list[QuantizeVariant] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def measured_ideals(self) -> list[IdealBatch]:
        return [row for row in self.ideal_batches if row.source == "measured"]


class ChartSpec(_Strict):
    """A PNG chart. Series: the lines (or scatter sets) of a line chart, the bar series of a bar chart, whose
    bar groups are its categories (one per config). Reference lines (SLO, baseline = 1.0) are not series."""

    name: str
    title: str
    path: str
    series_labels: list[str]
    categories: list[str] = Field(default_factory=list)
    values: dict[str, list[float | None]] = Field(
        default_factory=dict, description="The numbers drawn, per series (bar charts: one per category, in order); "
                                          "the tests compare them with the report's tables.")
    source: str = Field("", description="The SQL over the views whose rows the chart draws (run after the "
                                        "report's params, report.reproduce_sql); ';'-separated when several.")

    @property
    def series_count(self) -> int:
        return len(self.series_labels)


class ReportPaths(_Strict):
    markdown: str
    html: str
    json_path: str
    charts: list[ChartSpec]
