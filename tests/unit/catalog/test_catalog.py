"""Accelerator catalog: shipped data, override merge, error messages, cost helpers."""

from __future__ import annotations

from typing import get_args

import duckdb
import pytest
import yaml

from servesweep.catalog import CATALOG_ENV, CatalogError, cost_fields, load_catalog, prices_table
from servesweep.spec import Accelerator


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch):
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_shipped_catalog_covers_every_spec_accelerator():
    catalog = load_catalog()
    assert set(get_args(Accelerator)) <= set(catalog.accelerators)
    assert catalog.catalog_version


@pytest.mark.parametrize(
    ("name", "memory_gb", "bandwidth", "bf16"),
    [
        ("nvidia-l4", 24, 300, 121),
        ("nvidia-tesla-a100", 40, 1555, 312),
        ("nvidia-a100-80gb", 80, 2039, 312),
        ("nvidia-h100-80gb", 80, 3350, 989),
        ("nvidia-h200-141gb", 141, 4800, 989),
        ("nvidia-b200", 180, 8000, 2250),
    ],
)
def test_spec_sheet_numbers(name, memory_gb, bandwidth, bf16):
    accelerator = load_catalog().get(name)
    assert (accelerator.gpu_memory_gb, accelerator.hbm_bandwidth_gbps, accelerator.bf16_tflops) == (
        memory_gb, bandwidth, bf16,
    )


def test_every_machine_names_its_price_source_and_date():
    for accelerator in load_catalog().accelerators.values():
        for machine in accelerator.machines:
            assert machine.price_source == "list price, us-central1, on-demand"
            assert machine.price_date


def test_price_per_gpu_hour_and_share_of_a_bigger_machine():
    catalog = load_catalog()
    # a3-highgpu-8g: $88.2472 / 8 GPUs = $11.0309 per GPU-hour.
    assert catalog.price_per_gpu_hour("nvidia-h100-80gb") == pytest.approx(11.0309)
    # Two H100s land on the 8-GPU machine and pay two eighths of it: 2 x 11.0309 = 22.0618.
    assert catalog.hourly_cost("nvidia-h100-80gb", 2) == pytest.approx(22.0618)
    # One L4 lands on the smallest machine: g2-standard-4 at $0.70683.
    assert catalog.hourly_cost("nvidia-l4", 1) == pytest.approx(0.70683)
    # Three L4s land on g2-standard-48 (4 GPUs, $4.00167): 3/4 of it = 3.0012525.
    assert catalog.hourly_cost("nvidia-l4", 3) == pytest.approx(3.0012525)
    assert catalog.get("nvidia-l4").machine_for(3).machine_type == "g2-standard-48"


def test_too_many_gpus_is_an_error():
    with pytest.raises(CatalogError, match="no machine type has 16 GPUs"):
        load_catalog().hourly_cost("nvidia-l4", 16)


def test_unknown_accelerator_lists_the_known_ones():
    with pytest.raises(CatalogError, match="unknown accelerator 'nvidia-t4'.*nvidia-l4"):
        load_catalog().get("nvidia-t4")


def test_peak_falls_back_to_bf16_without_fp8():
    catalog = load_catalog()
    assert catalog.get("nvidia-tesla-a100").peak_tflops("fp8") == 312  # A100 has no fp8 tensor cores
    assert catalog.get("nvidia-tesla-a100").peak_tflops("int8") == 624
    assert catalog.get("nvidia-h100-80gb").peak_tflops("fp8") == 1979


def test_cost_fields_for_a_points_row():
    catalog = load_catalog()
    row = {"accelerator": "nvidia-l4", "accelerator_count": 1, "output_token_throughput": 500.0}
    fields = cost_fields(row, catalog)
    # 500 tok/s x 3600 s = 1.8M tokens per hour, for $0.70683: 2,546,581 tokens per dollar,
    # and $0.70683 / 1.8 = $0.392683 per million output tokens.
    assert fields["cost_per_hour"] == pytest.approx(0.70683)
    assert fields["output_tokens_per_dollar"] == pytest.approx(1.8e6 / 0.70683)
    assert fields["usd_per_million_output_tokens"] == pytest.approx(0.70683 / 1.8)


def test_cost_fields_are_none_without_price_or_throughput():
    catalog = load_catalog()
    b200_row = {"accelerator": "nvidia-b200", "accelerator_count": 8, "output_token_throughput": 1e4}
    unpriced = cost_fields(b200_row, catalog)
    assert unpriced == {"cost_per_hour": None, "output_tokens_per_dollar": None, "usd_per_million_output_tokens": None}
    failed = cost_fields({"accelerator": "nvidia-l4", "accelerator_count": 1, "output_token_throughput": None}, catalog)
    assert failed["cost_per_hour"] == pytest.approx(0.70683)
    assert failed["usd_per_million_output_tokens"] is None


def test_override_file_merges_over_the_shipped_catalog(tmp_path):
    override = write_yaml(tmp_path / "mine.yaml", {
        "catalog_version": "2025.01.1+team",
        "accelerators": {
            "nvidia-l4": {"machines": [
                {"machine_type": "g2-standard-4", "price_per_hour": 0.5},  # corrected price, rest kept
            ]},
            "nvidia-b200": {"machines": [{"machine_type": "a4-highgpu-8g", "price_per_hour": 100.0}]},
            "nvidia-l40s": {
                "gpu_memory_gb": 48, "hbm_bandwidth_gbps": 864, "bf16_tflops": 362,
                "machines": [{"machine_type": "custom-l40s", "gpus": 1, "price_per_hour": 1.5,
                              "price_source": "team quote", "price_date": "2025-03-01"}],
            },
        },
    })
    catalog = load_catalog(override)
    assert catalog.catalog_version == "2025.01.1+team"
    l4 = catalog.get("nvidia-l4")
    assert l4.machine_for(1).price_per_hour == 0.5
    assert l4.machine_for(1).price_source == "list price, us-central1, on-demand"  # kept from the shipped entry
    assert len(l4.machines) == 8  # merged by machine_type, not appended
    assert catalog.hourly_cost("nvidia-b200", 8) == 100.0
    assert catalog.get("nvidia-l40s").gpu_memory_gb == 48
    assert catalog.get("nvidia-h100-80gb").bf16_tflops == 989  # untouched entries survive


def test_override_from_environment(tmp_path, monkeypatch):
    override = write_yaml(tmp_path / "env.yaml", {"accelerators": {"nvidia-h100-80gb": {"bf16_tflops": 900}}})
    monkeypatch.setenv(CATALOG_ENV, override)
    assert load_catalog().get("nvidia-h100-80gb").bf16_tflops == 900


def test_bad_field_gives_one_message_naming_it(tmp_path):
    override = write_yaml(tmp_path / "bad.yaml", {
        "accelerators": {"nvidia-l4": {"machines": [{"machine_type": "g2-standard-4", "price_per_hour": -1}]}},
    })
    with pytest.raises(CatalogError) as caught:
        load_catalog(override)
    message = str(caught.value)
    assert "accelerators.nvidia-l4.machines.0.price_per_hour" in message
    assert "greater than 0" in message
    assert caught.value.__suppress_context__  # raised `from None`: no pydantic traceback chained on


def test_bad_price_date_and_unknown_field(tmp_path):
    override = write_yaml(tmp_path / "bad.yaml", {
        "accelerators": {"nvidia-l4": {"hbm_bandwith_gbps": 300,
                                       "machines": [{"machine_type": "g2-standard-4", "price_date": "Jan 2025"}]}},
    })
    with pytest.raises(CatalogError) as caught:
        load_catalog(override)
    assert "accelerators.nvidia-l4.hbm_bandwith_gbps: Extra inputs are not permitted" in str(caught.value)
    assert "price_date must look like YYYY-MM" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("accelerators: [unclosed", "not valid YAML"), ("- a\n- b\n", "expected a mapping")],
)
def test_unreadable_catalogs(tmp_path, content, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    with pytest.raises(CatalogError, match=expected):
        load_catalog(path)


def test_missing_override_file():
    with pytest.raises(CatalogError, match="cannot read catalog /nonexistent/catalog.yaml"):
        load_catalog("/nonexistent/catalog.yaml")


def test_prices_table_joins_points_in_sql():
    prices = prices_table(load_catalog())
    assert {"accelerator", "machine_type", "gpus", "price_per_gpu_hour"} <= set(prices.column_names)
    connection = duckdb.connect()
    connection.register("prices", prices)
    cheapest = connection.execute(
        "SELECT machine_type, price_per_gpu_hour FROM prices WHERE accelerator = 'nvidia-l4' "
        "ORDER BY price_per_gpu_hour LIMIT 1"
    ).fetchall()
    assert cheapest == [("g2-standard-4", pytest.approx(0.70683))]


@pytest.mark.parametrize(
    ("name", "interconnect", "gbps", "latency_us"),
    [
        ("nvidia-l4", "pcie", 32, 15),  # PCIe Gen4 x16: 64 GB/s both ways
        ("nvidia-tesla-a100", "nvlink", 300, 8),  # NVLink 3: 600 GB/s both ways
        ("nvidia-a100-80gb", "nvlink", 300, 8),
        ("nvidia-h100-80gb", "nvlink", 450, 8),  # NVLink 4: 900 GB/s both ways
        ("nvidia-h200-141gb", "nvlink", 450, 8),
        ("nvidia-b200", "nvlink", 900, 8),  # NVLink 5: 1.8 TB/s both ways
    ],
)
def test_gpu_links_are_one_way_per_gpu(name, interconnect, gbps, latency_us):
    accelerator = load_catalog().get(name)
    assert (accelerator.interconnect, accelerator.interconnect_gbps, accelerator.allreduce_latency_us) == (
        interconnect, gbps, latency_us)


def test_a_multi_gpu_machine_needs_a_link(tmp_path):
    override = write_yaml(tmp_path / "l40s.yaml", {"accelerators": {"nvidia-l40s": {
        "gpu_memory_gb": 48, "hbm_bandwidth_gbps": 864, "bf16_tflops": 362,
        "machines": [{"machine_type": "custom-l40s-x2", "gpus": 2, "price_per_hour": 3.0,
                      "price_source": "team quote", "price_date": "2025-03-01"}],
    }}})
    with pytest.raises(CatalogError, match="nvidia-l40s: a machine with several GPUs needs interconnect_gbps"):
        load_catalog(override)
