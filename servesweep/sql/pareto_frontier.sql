-- pareto_frontier: the points no other point beats on both throughput and latency, across all configs of a
-- comparison group (same model, workload shape and source), for each p99 latency metric. A point is dropped
-- when another has output throughput >= and latency <= with at least one strictly better; exact duplicates
-- both stay. Read it as: the best throughput you can buy at each latency, whatever the GPU, count,
-- quantization or batch size.
--
-- Columns:
--   comparison_group, latency_metric ('ttft_p99_ms', 'tpot_p99_ms' or 'e2e_p99_ms'), latency_ms
--   output_token_throughput
--   run_id, config_id, config_label, source, accelerator, accelerator_count, quantization, batch_size, point_id
--   output_tokens_per_dollar, usd_per_million_output_tokens, meets_slo
-- Ordered by group, metric, then latency (so throughput rises along the frontier); ties by config label and point.
CREATE OR REPLACE VIEW pareto_frontier AS
WITH candidates AS (
    SELECT c.*, m.latency_metric,
        CASE m.latency_metric WHEN 'ttft_p99_ms' THEN c.ttft_p99_ms
                              WHEN 'tpot_p99_ms' THEN c.tpot_p99_ms
                              ELSE c.e2e_p99_ms END AS latency_ms
    FROM point_costs AS c
    CROSS JOIN (VALUES ('ttft_p99_ms'), ('tpot_p99_ms'), ('e2e_p99_ms')) AS m(latency_metric)
),
valid AS (
    SELECT * FROM candidates WHERE latency_ms IS NOT NULL AND output_token_throughput IS NOT NULL
)
SELECT a.comparison_group, a.latency_metric, a.latency_ms, a.output_token_throughput,
       a.run_id, a.config_id, a.config_label, a.source, a.accelerator, a.accelerator_count, a.quantization,
       a.batch_size, a.point_id, a.output_tokens_per_dollar, a.usd_per_million_output_tokens, a.meets_slo
FROM valid AS a
WHERE NOT EXISTS (
    SELECT 1 FROM valid AS b
    WHERE b.comparison_group = a.comparison_group AND b.latency_metric = a.latency_metric
      AND b.output_token_throughput >= a.output_token_throughput AND b.latency_ms <= a.latency_ms
      AND (b.output_token_throughput > a.output_token_throughput OR b.latency_ms < a.latency_ms)
)
ORDER BY a.comparison_group, a.latency_metric, a.latency_ms, a.output_token_throughput DESC, a.config_label, a.point_id;
