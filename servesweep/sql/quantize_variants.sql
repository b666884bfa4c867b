-- quantize_variants: per config of ideal_batch, the quantization variant it served with what its checkpoint
-- weighs (runs: the quantize step's result) and its accuracy against the same model's unquantized baseline
-- (the accuracy table, measured in any selected run of the same comparison group and variant). One row per
-- config and accuracy task/metric; a config without accuracy rows has one row with null accuracy columns.
--
-- Columns:
--   comparison_group, config_id, config_label, run_id, source, accelerator, accelerator_count   the config
--   model_preset, model_dtype, quantization        the model and the variant
--   quantize_how, weight_bytes                     how the quantize step made it; its weight files' bytes
--                                                  (0 or null: the server drew the weights, dummy)
--   accuracy_run_id, task, metric, higher_is_better, value, baseline_value   the accuracy row (null: none)
--   delta, delta_low, delta_high, threshold, passed                          its comparison with the baseline
CREATE OR REPLACE VIEW quantize_variants AS
WITH configs AS (
    SELECT b.comparison_group, b.config_id, b.config_label, b.run_id, b.source, b.accelerator,
           b.accelerator_count, b.model_name, coalesce(b.quantization, 'none') AS quantization,
           any_value(c.model_preset) AS model_preset, any_value(c.model_dtype) AS model_dtype
    FROM ideal_batch AS b JOIN point_costs AS c USING (config_id)
    GROUP BY ALL
),
group_runs AS (
    SELECT DISTINCT comparison_group, run_id FROM point_costs
),
scored AS (
    SELECT g.comparison_group, a.* FROM accuracy AS a JOIN group_runs AS g USING (run_id)
)
SELECT c.comparison_group, c.config_id, c.config_label, c.run_id, c.source, c.accelerator, c.accelerator_count,
       c.model_preset, c.model_dtype, c.quantization, r.quantize_how, r.weight_bytes,
       s.run_id AS accuracy_run_id, s.task, s.metric, s.higher_is_better, s.value, s.baseline_value, s.delta,
       s.delta_low, s.delta_high, s.threshold, s.passed
FROM configs AS c
LEFT JOIN runs AS r ON r.run_id = c.run_id
LEFT JOIN scored AS s ON s.comparison_group = c.comparison_group AND s.quantization = c.quantization
ORDER BY c.comparison_group, c.config_id, s.task, s.metric;
