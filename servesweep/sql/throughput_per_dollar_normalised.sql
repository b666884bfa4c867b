-- throughput_per_dollar_normalised: output tokens per dollar relative to a baseline accelerator (the GKE
-- guide's "G2 = 1" charts). One row per counted point.
--
-- The baseline is `params.baseline_accelerator` (default nvidia-l4), compared within the point's
-- comparison_group (same model, workload shape and source):
--   vs_baseline_best        tokens/$ / the BEST tokens/$ of any baseline-accelerator point in the group
--                           (any accelerator_count, batch size, quantization): the baseline's best = 1.0.
--                           This is the number the bar chart and the report use.
--   vs_baseline_same_batch  tokens/$ / the baseline's best tokens/$ at the SAME batch size (null when the
--                           baseline has no point at that batch size).
-- Both are null when the group has no priced baseline point.
--
-- Columns:
--   run_id, config_id, config_label, comparison_group, source, accelerator, accelerator_count, quantization
--   batch_size, point_id, output_token_throughput, cost_per_hour
--   output_tokens_per_dollar, usd_per_million_output_tokens
--   baseline_accelerator                     from params
--   baseline_best_tokens_per_dollar          the denominator of vs_baseline_best
--   vs_baseline_best
--   baseline_same_batch_tokens_per_dollar    the denominator of vs_baseline_same_batch
--   vs_baseline_same_batch
--   is_config_best                           this point has its config's best tokens/$ (ties: smaller batch)
--   meets_slo                                see point_costs
CREATE OR REPLACE VIEW throughput_per_dollar_normalised AS
WITH baseline_points AS (
    SELECT c.comparison_group, c.batch_size, c.output_tokens_per_dollar
    FROM point_costs AS c JOIN params AS s ON c.accelerator = s.baseline_accelerator
    WHERE c.output_tokens_per_dollar IS NOT NULL
),
baseline_best AS (
    SELECT comparison_group, max(output_tokens_per_dollar) AS tokens_per_dollar
    FROM baseline_points GROUP BY comparison_group
),
baseline_by_batch AS (
    SELECT comparison_group, batch_size, max(output_tokens_per_dollar) AS tokens_per_dollar
    FROM baseline_points GROUP BY comparison_group, batch_size
)
SELECT c.run_id, c.config_id, c.config_label, c.comparison_group, c.source,
       c.accelerator, c.accelerator_count, c.quantization,
       c.batch_size, c.point_id, c.output_token_throughput, c.cost_per_hour,
       c.output_tokens_per_dollar, c.usd_per_million_output_tokens,
       s.baseline_accelerator,
       bb.tokens_per_dollar AS baseline_best_tokens_per_dollar,
       c.output_tokens_per_dollar / bb.tokens_per_dollar AS vs_baseline_best,
       bs.tokens_per_dollar AS baseline_same_batch_tokens_per_dollar,
       c.output_tokens_per_dollar / bs.tokens_per_dollar AS vs_baseline_same_batch,
       row_number() OVER (
           PARTITION BY c.config_id ORDER BY c.output_tokens_per_dollar DESC NULLS LAST, c.batch_size, c.point_id
       ) = 1 AS is_config_best,
       c.meets_slo
FROM point_costs AS c
CROSS JOIN params AS s
LEFT JOIN baseline_best AS bb ON bb.comparison_group = c.comparison_group
LEFT JOIN baseline_by_batch AS bs ON bs.comparison_group = c.comparison_group AND bs.batch_size = c.batch_size
ORDER BY c.comparison_group, c.config_label, c.batch_size, c.point_id;
