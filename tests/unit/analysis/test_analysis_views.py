"""The analysis views (servesweep/sql) on lakes written through the lake writer, against hand-checked answers."""

import warnings

import pytest

from servesweep.analysis.views import VIEWS, connect, create_views, query, set_params, view_doc
from servesweep.catalog import cost_fields, load_catalog
from servesweep.spec import SLOSpec
from tests.support.analysis_lake import fleet_rows, point, round_price_catalog, spine_rows, write_points

SLO = SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50)


@pytest.fixture
def fleet(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, fleet_rows())
    connection = connect(lake)
    create_views(connection, SLO, "nvidia-l4", catalog=round_price_catalog(tmp_path))
    yield connection
    connection.close()


def _rows(connection, sql: str) -> list[dict]:
    return connection.sql(sql).to_arrow_table().to_pylist()


def _by_label(rows: list[dict]) -> dict[str, dict]:
    return {row["config_label"]: row for row in rows}


L4 = "nvidia-l4 x1 llama3-8b none vllm 1024/256 client_concurrency"
A100 = "nvidia-tesla-a100 x1 llama3-8b none vllm 1024/256 client_concurrency"
INT8 = "nvidia-tesla-a100 x1 llama3-8b int8 vllm 1024/256 client_concurrency"
CPU = "cpu x1 llama3-8b none vllm 1024/256 client_concurrency"
L4_PREDICTED = "nvidia-l4 x1 llama3-8b none vllm 1024/256 predicted"


def test_every_view_documents_its_columns():
    for name in VIEWS:
        doc = view_doc(name)
        assert doc.startswith(f"{name}:") and "Columns:" in doc, name


def test_costs_match_the_catalog_helper(tmp_path):
    """SQL prices equal catalog.cost_fields on the shipped catalog: the real spine run and other placements."""
    lake = str(tmp_path / "lake")
    others = [point("gpus", accelerator, 4, 500.0, 100, 20, accelerator_count=count, point_id=f"{accelerator}-{count}")
              for accelerator, count in [("nvidia-l4", 1), ("nvidia-l4", 2), ("nvidia-h100-80gb", 1),
                                         ("nvidia-tesla-a100", 16)]]
    write_points(lake, spine_rows() + others + [point("gpus", "tpu-v5e", 1, 10.0, 1, 1, point_id="no-price")])
    catalog = load_catalog()
    rows = query(lake, "SELECT * FROM point_costs").to_pylist()
    assert len(rows) == 8 + 5
    for row in rows:
        expected = cost_fields(row, catalog)
        for column, value in expected.items():
            assert row[column] == pytest.approx(value), (row["point_id"], column)
    by_point = {row["point_id"]: row for row in rows}
    # By hand: 2 L4s land on g2-standard-24 ($2.00083/h), the fewest-GPU machine that holds them; one H100
    # pays 1/8 of an a3-highgpu-8g; cpu is the catalog's n2-standard-8.
    assert (by_point["nvidia-l4-2"]["machine_type"], by_point["nvidia-l4-2"]["cost_per_hour"]) == \
        ("g2-standard-24", pytest.approx(2.00083))
    assert by_point["nvidia-h100-80gb-1"]["cost_per_hour"] == pytest.approx(88.2472 / 8)
    assert by_point["cc-b1-i128-o64"]["cost_per_hour"] == pytest.approx(0.388472)
    assert by_point["no-price"]["cost_per_hour"] is None and by_point["no-price"]["output_tokens_per_dollar"] is None


def test_only_ok_and_partial_points_count_and_runs_can_be_chosen(fleet):
    statuses = _rows(fleet, "SELECT DISTINCT status FROM point_costs")
    assert statuses == [{"status": "ok"}]
    assert _rows(fleet, "SELECT count(*) AS n FROM points WHERE status = 'failed'") == [{"n": 1}]
    assert _rows(fleet, "SELECT count(*) AS n FROM point_costs") == [{"n": 18}]
    set_params(fleet, SLO, "nvidia-l4", ["cpu-slow"])
    assert _rows(fleet, "SELECT DISTINCT run_id FROM ideal_batch") == [{"run_id": "cpu-slow"}]


def test_partial_points_count(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, [point("r", "nvidia-l4", 1, 10.0, 1, 1, status="partial", num_errors=1)])
    assert query(lake, "SELECT status FROM point_costs").to_pylist() == [{"status": "partial"}]


def test_throughput_normalised_to_the_baseline(fleet):
    found = _rows(fleet, "SELECT * FROM throughput_per_dollar_normalised")
    rows = {(r["config_label"], r["batch_size"]): r for r in found}
    # L4 $0.50/h: best tokens/$ is batch 16, 200 tok/s x 3600 / 0.5 = 1,440,000 = 1.0.
    assert rows[(L4, 16)]["baseline_best_tokens_per_dollar"] == pytest.approx(1_440_000)
    assert rows[(L4, 16)]["vs_baseline_best"] == pytest.approx(1.0)
    # A100 $2/h at 900 tok/s: 1,620,000 tokens/$ = 1.125 x; at batch 1, 60 tok/s: 108,000 = 0.075 x.
    assert rows[(A100, 16)]["vs_baseline_best"] == pytest.approx(1.125)
    assert rows[(A100, 1)]["vs_baseline_best"] == pytest.approx(0.075)
    # Same batch: L4 batch 1 makes 30 x 7200 = 216,000 tokens/$, so A100 batch 1 is 0.5 x; no L4 batch 32.
    assert rows[(A100, 1)]["vs_baseline_same_batch"] == pytest.approx(0.5)
    assert rows[(A100, 32)]["vs_baseline_same_batch"] is None
    # The config's best tokens/$: A100 ties at 16 and 32, the smaller batch is the one flagged.
    assert [b for (label, b), r in rows.items() if label == A100 and r["is_config_best"]] == [16]
    # Predictions are normalised to the predicted baseline, never to measurements: 220 tok/s is their best.
    assert rows[(L4_PREDICTED, 8)]["vs_baseline_best"] == pytest.approx(1.0)
    set_params(fleet, SLO, "nvidia-h100-80gb")
    absent = _rows(fleet, "SELECT DISTINCT vs_baseline_best, baseline_best_tokens_per_dollar "
                          "FROM throughput_per_dollar_normalised")
    assert absent == [{"vs_baseline_best": None, "baseline_best_tokens_per_dollar": None}]


def test_ideal_batch_knee_tie_and_slo_never_met(fleet):
    ideal = _by_label(_rows(fleet, "SELECT * FROM ideal_batch"))
    assert set(ideal) == {L4, A100, INT8, CPU, L4_PREDICTED}
    l4 = ideal[L4]
    # The knee: batch 16 misses both bounds (900 > 500 ms TTFT, 60 > 50 ms TPOT), so batch 8 wins.
    assert (l4["meets_slo"], l4["ideal_batch_size"], l4["output_token_throughput"]) == (True, 8, 180)
    assert l4["reason"] == "batch 8 has the highest output throughput of the 4 of 5 points within the SLO"
    assert l4["output_tokens_per_dollar"] == pytest.approx(1_296_000)  # 180 x 3600 / 0.5
    assert l4["usd_per_million_output_tokens"] == pytest.approx(0.5e6 / (180 * 3600))
    assert (l4["max_throughput_batch_size"], l4["batch_sizes_meeting_slo"]) == (16, [1, 2, 4, 8])
    assert l4["tokens_per_dollar_vs_baseline"] == pytest.approx(1.0)
    # Tie: batches 16 and 32 both make 900 tok/s within the SLO; the smaller one is chosen and the tie named.
    a100 = ideal[A100]
    assert (a100["ideal_batch_size"], a100["tied_batch_sizes"], a100["max_throughput_batch_size"]) == (16, [32], 16)
    assert a100["reason"].endswith("(tied with batch 32; the smaller batch is chosen)")
    assert a100["tokens_per_dollar_vs_baseline"] == pytest.approx(1_620_000 / 1_296_000)
    # int8's 1000 tok/s at batch 16 misses TTFT (600 ms): batch 4 at 280 tok/s.
    assert (ideal[INT8]["ideal_batch_size"], ideal[INT8]["output_token_throughput"]) == (4, 280)
    # Never met: no ideal columns, and the reason quotes the smallest batch's misses.
    cpu = ideal[CPU]
    assert (cpu["meets_slo"], cpu["ideal_batch_size"], cpu["output_tokens_per_dollar"]) == (False, None, None)
    assert cpu["reason"] == ("none of the 2 points meets the SLO; even batch 1 misses: "
                             "ttft_p99 5000.0 > 500.0 ms; tpot_p99 80.0 > 50.0 ms")
    assert cpu["batch_sizes_meeting_slo"] == [] and cpu["points_meeting_slo"] == 0
    assert ideal[L4_PREDICTED]["source"] == "predicted"


def test_ideal_batch_follows_the_parameters(fleet):
    set_params(fleet, None, "nvidia-l4")
    l4 = _by_label(_rows(fleet, "SELECT * FROM ideal_batch"))[L4]
    assert (l4["ideal_batch_size"], l4["reason"]) == (16, "no SLO set: batch 16 has the highest output "
                                                          "throughput of the 5 points")
    # E2E only: batch 8 takes 300 + 255 x 40 = 10,500 ms, batch 4 150 + 255 x 35 = 9,075 ms.
    set_params(fleet, SLOSpec(e2e_p99_ms=10_000), "nvidia-l4")
    assert _by_label(_rows(fleet, "SELECT * FROM ideal_batch"))[L4]["ideal_batch_size"] == 4
    # The documented SQL route: UPDATE params, and the views follow.
    fleet.execute("UPDATE params SET slo_e2e_p99_ms = NULL, slo_ttft_p99_ms = 130")
    assert _by_label(_rows(fleet, "SELECT * FROM ideal_batch"))[L4]["ideal_batch_size"] == 2


def test_prefill_decode_speeds_and_balance(tmp_path):
    lake = str(tmp_path / "lake")
    rows = fleet_rows() + [
        # 4096-token prompts, 2-token answers: p50 TTFT 800 ms, mean E2E 800 + 1 x 24 = 824 ms.
        point("long", "nvidia-l4", 1, 2.4, 1000, 30, input_tokens=4096, output_tokens=2),
        # TPOT 0 (every token in one chunk): decode speed unknown, not infinite.
        point("long", "nvidia-l4", 2, 4.0, 1000, 0, input_tokens=4096, output_tokens=2, quantization="int8"),
    ]
    write_points(lake, rows)
    found = _by_label(query(lake, "SELECT * FROM prefill_decode").to_pylist())
    l4 = found[L4]
    # Batch 1: p50 TTFT 80 ms for 1024 tokens; p50 TPOT 24 ms. Batch 16: p50 TPOT 48 ms.
    assert l4["prefill_tokens_per_s"] == pytest.approx(12_800)
    assert l4["decode_tokens_per_s"] == pytest.approx(1000 / 24)
    assert (l4["low_batch_size"], l4["max_batch_size"]) == (1, 16)
    assert l4["decode_tokens_per_s_per_sequence_max_batch"] == pytest.approx(1000 / 48)
    assert l4["decode_tokens_per_s_all_sequences_max_batch"] == pytest.approx(16 * 1000 / 48)
    assert l4["ttft_share_of_e2e"] == pytest.approx(80 / (80 + 255 * 24))
    assert l4["workload_balance"] == "decode-heavy"
    long_prompt = found["nvidia-l4 x1 llama3-8b none vllm 4096/2 client_concurrency"]
    assert long_prompt["ttft_share_of_e2e"] == pytest.approx(800 / 824)
    assert long_prompt["workload_balance"] == "prefill-heavy"
    one_chunk = found["nvidia-l4 x1 llama3-8b int8 vllm 4096/2 client_concurrency"]
    assert one_chunk["decode_tokens_per_s"] is None and one_chunk["prefill_tokens_per_s"] == pytest.approx(4096 / 0.8)


def test_pareto_frontier(tmp_path):
    lake = str(tmp_path / "lake")

    def at(run, batch, throughput, e2e, accelerator="nvidia-l4"):
        return point(run, accelerator, batch, throughput, 10, 1, e2e_p99_ms=e2e)

    write_points(lake, [
        at("a", 1, 50, 900), at("a", 2, 100, 1000), at("a", 4, 200, 1500),
        at("b", 1, 150, 2000, "nvidia-tesla-a100"),  # dominated by a/4: less throughput, more latency
        at("b", 2, 200, 1500, "nvidia-tesla-a100"),  # an exact duplicate of a/4: both stay
        at("b", 4, 180, 1500, "nvidia-tesla-a100"),  # same latency as a/4, less throughput: dropped
    ])
    frontier = query(lake, "SELECT run_id, batch_size, latency_ms, output_token_throughput FROM pareto_frontier "
                           "WHERE latency_metric = 'e2e_p99_ms'").to_pylist()
    assert [(r["run_id"], r["batch_size"]) for r in frontier[:2]] == [("a", 1), ("a", 2)]
    assert sorted((r["run_id"], r["batch_size"]) for r in frontier[2:]) == [("a", 4), ("b", 2)]
    assert [r["latency_ms"] for r in frontier] == [900, 1000, 1500, 1500]


def test_spine_run_next_to_another_accelerator(tmp_path):
    """The real cpu run, with an L4 run of the same model and shape written beside it."""
    lake = str(tmp_path / "lake")
    real = spine_rows()
    l4 = [point("l4-tiny", "nvidia-l4", b, t, 5, 1, model="tiny-llama", input_tokens=128, output_tokens=64)
          for b, t in [(1, 1000.0), (8, 6000.0)]]
    write_points(lake, real + l4)
    ideal = _by_label(query(lake, "SELECT * FROM ideal_batch").to_pylist())
    measured = [r for r in real if r["source"] == "measured"]
    fastest = max(measured, key=lambda r: r["output_token_throughput"])
    cpu = ideal["cpu x1 tiny-llama none vllm 128/64 client_concurrency"]
    assert (cpu["ideal_batch_size"], cpu["output_token_throughput"]) == (fastest["batch_size"],
                                                                        fastest["output_token_throughput"])
    # Normalised to the L4 run's best (6000 tok/s on the shipped $0.70683/h g2-standard-4).
    l4_best = 6000 * 3600 / 0.70683
    assert cpu["tokens_per_dollar_vs_baseline"] == pytest.approx(
        fastest["output_token_throughput"] * 3600 / 0.388472 / l4_best)
    predicted = ideal["cpu x1 tiny-llama none vllm 128/64 predicted"]
    assert predicted["comparison_group"] == "tiny-llama 128/64 predicted"
    assert predicted["tokens_per_dollar_vs_baseline"] is None  # no predicted L4 to normalise to


def test_query_has_the_views_on_an_empty_lake_and_survives_a_broken_catalog(tmp_path, monkeypatch):
    # an empty lake exists; a missing one is an error (tests/integration/test_lake_safety.py)
    (tmp_path / "empty").mkdir()
    lake = str(tmp_path / "empty")
    for name in VIEWS:
        assert query(lake, f"SELECT count(*) AS n FROM {name}").to_pylist() == [{"n": 0}]
    broken = tmp_path / "broken.yaml"
    broken.write_text("accelerators: [not, a, mapping]\n")
    monkeypatch.setenv("SERVESWEEP_CATALOG", str(broken))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert query(lake, "SELECT count(*) AS n FROM points").to_pylist() == [{"n": 0}]
    assert any("analysis views unavailable" in str(w.message) for w in caught)
