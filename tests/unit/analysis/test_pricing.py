"""Costs the way GCP bills: on-demand, spot and committed-use prices with their source and date, a --pricing
choice, input and output tokens priced apart, and a report that states the prices it used."""

from __future__ import annotations

import pytest

from servesweep.analysis.report import build_report, render_markdown  # noqa: E402
from servesweep.analysis.views import connect  # noqa: E402
from servesweep.catalog import PRICINGS, CatalogError, load_catalog  # noqa: E402
from servesweep.spec import SLOSpec  # noqa: E402
from tests.support.analysis_lake import point, write_points

PRICES = """
catalog_version: test-pricing
accelerators:
  nvidia-l4:
    machines:
      - machine_type: g2-standard-4
        price_per_hour: 0.5
        spot: {price_per_hour: 0.4, source: "billing export", date: "2026-12-01"}
        cud_1y: {price_per_hour: 0.35, source: "contract A", date: "2026-11"}
        cud_3y: null
      # The shipped catalog prices the other one-GPU G2 machines too; this test catalog has no 3-year
      # price for any of them, and its own spot and 1-year prices undercut the shipped ones.
      - {machine_type: g2-standard-8, cud_3y: null}
      - {machine_type: g2-standard-12, cud_3y: null}
      - {machine_type: g2-standard-16, cud_3y: null}
      - {machine_type: g2-standard-32, cud_3y: null}
"""
SLO = SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50)


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    return load_catalog(path)


@pytest.fixture
def lake(tmp_path):
    lake = str(tmp_path / "lake")
    # 1024 prompt / 256 output tokens; p50 TTFT 0.8 x 100 ms, E2E p50 = 80 + 255 x 16 ms (analysis_lake.point)
    write_points(lake, [point("l4", "nvidia-l4", b, t, 100, 20, input_token_throughput=4 * t)
                        for b, t in [(1, 30), (4, 100)]])
    return lake


def test_with_pricing_swaps_the_price_and_its_source(catalog):
    spot = catalog.with_pricing("spot").get("nvidia-l4").machine_for(1)
    assert (spot.price_per_hour, spot.price_source, spot.price_date, spot.pricing) == (
        0.4, "billing export", "2026-12-01", "spot")
    assert catalog.with_pricing("cud-1y").hourly_cost("nvidia-l4", 1) == 0.35
    assert catalog.with_pricing("cud-3y").hourly_cost("nvidia-l4", 1) is None  # no such price: unpriced
    assert catalog.with_pricing("on-demand").hourly_cost("nvidia-l4", 1) == 0.5
    with pytest.raises(CatalogError, match="unknown pricing 'reserved'"):
        catalog.with_pricing("reserved")
    assert PRICINGS == ("on-demand", "spot", "cud-1y", "cud-3y")


def test_a_price_without_a_date_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(PRICES.replace('date: "2026-11"', 'date: "last week"'))
    with pytest.raises(CatalogError, match="price_date must look like"):
        load_catalog(path)


@pytest.mark.parametrize("pricing,per_hour", [("on-demand", 0.5), ("spot", 0.4), ("cud-1y", 0.35)])
def test_report_costs_at_the_chosen_prices_and_says_which(lake, catalog, pricing, per_hour):
    report = build_report(lake, [], SLO, "nvidia-l4", catalog, pricing=pricing)
    (ideal,) = report.measured_ideals()
    assert ideal.pricing == pricing and ideal.cost_per_hour == per_hour
    assert ideal.usd_per_million_output_tokens == pytest.approx(1e6 * per_hour / (100 * 3600))
    markdown = render_markdown(report)
    assert f"prices: {pricing}" in markdown
    assert f"g2-standard-4 (nvidia-l4): ${per_hour:.4g}/h {pricing}" in markdown


def test_a_pricing_the_catalog_lacks_leaves_costs_empty_and_says_so(lake, catalog):
    report = build_report(lake, [], SLO, "nvidia-l4", catalog, pricing="cud-3y")
    assert report.measured_ideals()[0].usd_per_million_output_tokens is None
    assert "no cud-3y price in the catalog" in " ".join(report.prices_used)
    assert any("no catalog price for nvidia-l4 x1" in note for note in report.notes)


def test_input_and_output_tokens_are_priced_apart_and_add_up(lake, catalog):
    connection = connect(lake, SLO, "nvidia-l4", catalog=catalog)
    try:
        rows = connection.sql("SELECT * FROM point_costs").to_arrow_table().to_pylist()
    finally:
        connection.close()
    for row in rows:
        share = row["ttft_mean_ms"] / row["e2e_mean_ms"]
        assert row["prefill_time_share"] == pytest.approx(share)
        # The machine's cost of one second of tokens = input tokens x their price + output tokens x theirs.
        cost_per_s = row["cost_per_hour"] / 3600
        billed = (row["input_token_throughput"] * row["usd_per_million_input_tokens_split"]
                  + row["output_token_throughput"] * row["usd_per_million_output_tokens_split"]) / 1e6
        assert billed == pytest.approx(cost_per_s)
        assert row["usd_per_million_output_tokens_split"] < row["usd_per_million_output_tokens"]


def test_the_shipped_catalog_carries_dated_spot_and_cud_prices_with_sources():
    shipped = load_catalog()
    for pricing, per_hour in [("spot", 50.60954), ("cud-1y", 61.38367), ("cud-3y", 38.86438)]:
        machine = shipped.with_pricing(pricing).get("nvidia-h100-80gb").machine_for(8)
        assert machine.price_per_hour == per_hour and machine.price_date == "2026-07-30"
        assert "Cyclenerd/google-cloud-pricing-cost-calculator" in machine.price_source
    # Every spot or CUD price is cheaper than the machine's on-demand price, and dated.
    for entry in shipped.accelerators.values():
        for machine in entry.machines:
            for price in (machine.spot, machine.cud_1y, machine.cud_3y):
                if price is not None and machine.price_per_hour is not None:
                    assert price.price_per_hour is not None and price.price_per_hour < machine.price_per_hour
                    assert price.source and price.date
    # Not found in any stored source: absent, never guessed.
    assert shipped.with_pricing("cud-1y").hourly_cost("nvidia-h200-141gb", 8) is None
    assert shipped.with_pricing("spot").hourly_cost("nvidia-b200", 8) is None
    assert shipped.get("nvidia-a100-80gb").machine_for(1).cud_3y is None


def test_report_at_spot_uses_the_shipped_spot_price_and_says_so(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, [point("h100", "nvidia-h100-80gb", b, t, 100, 20) for b, t in [(1, 90), (8, 600)]])
    report = build_report(lake, [], SLO, "nvidia-h100-80gb", load_catalog(), pricing="spot")
    (ideal,) = report.measured_ideals()
    spot_per_gpu = 50.60954 / 8  # one GPU costed as a share of a3-highgpu-8g
    assert ideal.pricing == "spot" and ideal.cost_per_hour == pytest.approx(spot_per_gpu)
    assert ideal.usd_per_million_output_tokens == pytest.approx(1e6 * spot_per_gpu / (600 * 3600))
    markdown = render_markdown(report)
    assert "prices: spot" in markdown and "2026-07-30" in markdown and "Cyclenerd" in markdown
