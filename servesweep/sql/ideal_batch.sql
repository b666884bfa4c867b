-- ideal_batch: per config, the batch size to run: the largest output throughput among the points whose
-- p99 TTFT, p99 TPOT and p99 E2E meet the SLO in `params` (unbounded metrics are not checked; with no SLO
-- the largest throughput wins). A config measured with a per-request SLO ranks by goodput instead (the
-- rate of requests within it), among the points keeping at least params.slo_min_attainment of their
-- requests within it: the "max load under SLO" knee. Ties go to the smaller batch size (same tokens,
-- less latency and memory). A config where no point meets the SLO gets meets_slo = false, null ideal
-- columns and a reason.
-- One row per config (point_costs.config_id: what was measured, whichever runs measured it).
--
-- Columns:
--   run_id (of the max-throughput point), config_id, config_label, comparison_group, source, model_name, quantization, server_kind,
--   accelerator, accelerator_count, input_tokens, output_tokens, sweep_mode          the config
--   slo_ttft_p99_ms, slo_tpot_p99_ms, slo_e2e_p99_ms    the bounds applied (null = not bounded)
--   meets_slo                        some point meets the SLO (and has a throughput)
--   reason                           why this batch, or why none: the smallest batch's misses
--   ranked_by                        'goodput' (a per-request SLO was measured) or 'output throughput'
--   ideal_batch_size, point_id       the chosen point (null when none meets)
--   output_token_throughput, ttft_p99_ms, tpot_p99_ms, e2e_p99_ms     at the chosen point
--   output_token_throughput_ci_low, output_token_throughput_ci_high   its 95 % interval (null: not measured)
--   goodput, slo_attainment          at the chosen point (null without a per-request SLO)
--   p99_few_requests, noisy          the chosen point's p99 rests on < 100 requests; its repeats disagree
--   cost_per_hour, output_tokens_per_dollar, usd_per_million_output_tokens   at the chosen point
--   usd_per_million_input_tokens_split, usd_per_million_output_tokens_split  its input and output token prices
--   machine_type, pricing, price_source, price_date                          the price it was costed at
--   tokens_per_dollar_vs_baseline    output_tokens_per_dollar / the best ideal tokens/$ of the baseline
--                                    accelerator (params.baseline_accelerator) in the comparison group
--   tied_batch_sizes                 other batch sizes within the SLO with exactly the same throughput
--   max_throughput_batch_size, max_output_token_throughput    the best point ignoring the SLO
--   points_counted, points_meeting_slo
--   batch_sizes_tested, batch_sizes_meeting_slo               sorted lists
--   run_ids                          sorted runs whose points make up the config's series
CREATE OR REPLACE VIEW ideal_batch AS
WITH eligible AS (
    SELECT *, meets_slo AND slo_value IS NOT NULL AS can_pick FROM point_costs
),
ranked AS (
    SELECT *,
        row_number() OVER (
            PARTITION BY config_id ORDER BY output_token_throughput DESC NULLS LAST, batch_size, point_id
        ) AS rank_any,
        row_number() OVER (
            PARTITION BY config_id, can_pick ORDER BY slo_value DESC, batch_size, point_id
        ) AS rank_pick,
        row_number() OVER (PARTITION BY config_id ORDER BY batch_size, point_id) AS rank_low
    FROM eligible
),
summary AS (
    SELECT config_id,
           count(*) AS points_counted,
           count(*) FILTER (WHERE can_pick) AS points_meeting_slo,
           list(DISTINCT batch_size ORDER BY batch_size) AS batch_sizes_tested,
           coalesce(list(DISTINCT batch_size ORDER BY batch_size) FILTER (WHERE can_pick), []) AS batch_sizes_meeting_slo,
           list(DISTINCT run_id ORDER BY run_id) AS run_ids
    FROM eligible GROUP BY config_id
),
top AS (SELECT * FROM ranked WHERE rank_any = 1),
pick AS (SELECT * FROM ranked WHERE can_pick AND rank_pick = 1),
low AS (SELECT * FROM ranked WHERE rank_low = 1),
ties AS (
    SELECT p.config_id, list(DISTINCT r.batch_size ORDER BY r.batch_size) AS tied_batch_sizes
    FROM pick AS p JOIN ranked AS r
      ON r.config_id = p.config_id AND r.can_pick AND r.point_id <> p.point_id
     AND r.slo_value = p.slo_value
    GROUP BY p.config_id
),
baseline AS (
    SELECT p.comparison_group, max(p.output_tokens_per_dollar) AS tokens_per_dollar
    FROM pick AS p JOIN params AS s ON p.accelerator = s.baseline_accelerator
    GROUP BY p.comparison_group
)
SELECT t.run_id, t.config_id, t.config_label, t.comparison_group, t.source, t.model_name, t.quantization,
       t.server_kind, t.accelerator, t.accelerator_count, t.input_tokens, t.output_tokens, t.sweep_mode,
       s.slo_ttft_p99_ms, s.slo_tpot_p99_ms, s.slo_e2e_p99_ms,
       p.point_id IS NOT NULL AS meets_slo,
       CASE
           WHEN p.point_id IS NULL AND m.points_counted = 1
               THEN format('its only point, batch {}, misses the SLO: {}', l.batch_size,
                           coalesce(l.slo_misses, 'no output throughput measured'))
           WHEN p.point_id IS NULL THEN format('none of the {} points meets the SLO; even batch {} misses: {}',
               m.points_counted, l.batch_size, coalesce(l.slo_misses, 'no output throughput measured'))
           WHEN p.goodput IS NOT NULL
               THEN format('batch {} has the highest goodput ({:.4g} req/s within the per-request SLO) of the {} of {} '
                           'points within the SLO', p.batch_size, p.goodput, m.points_meeting_slo, m.points_counted)
           WHEN s.slo_ttft_p99_ms IS NULL AND s.slo_tpot_p99_ms IS NULL AND s.slo_e2e_p99_ms IS NULL
               THEN format('no SLO set: batch {} has the highest output throughput of the {} points',
                           p.batch_size, m.points_counted)
           ELSE format('batch {} has the highest output throughput of the {} of {} points within the SLO',
                       p.batch_size, m.points_meeting_slo, m.points_counted)
       END || CASE WHEN tie.tied_batch_sizes IS NOT NULL
                   THEN format(' (tied with batch {}; the smaller batch is chosen)', array_to_string(tie.tied_batch_sizes, ', '))
                   ELSE '' END AS reason,
       CASE WHEN t.goodput IS NOT NULL THEN 'goodput' ELSE 'output throughput' END AS ranked_by,
       p.batch_size AS ideal_batch_size, p.point_id,
       p.output_token_throughput, p.ttft_p99_ms, p.tpot_p99_ms, p.e2e_p99_ms,
       p.output_token_throughput_ci_low, p.output_token_throughput_ci_high, p.goodput, p.slo_attainment,
       p.p99_few_requests, p.noisy,
       p.cost_per_hour, p.output_tokens_per_dollar, p.usd_per_million_output_tokens,
       p.usd_per_million_input_tokens_split, p.usd_per_million_output_tokens_split,
       t.machine_type, t.pricing, t.price_source, t.price_date,
       p.output_tokens_per_dollar / b.tokens_per_dollar AS tokens_per_dollar_vs_baseline,
       coalesce(tie.tied_batch_sizes, []) AS tied_batch_sizes,
       t.batch_size AS max_throughput_batch_size, t.output_token_throughput AS max_output_token_throughput,
       m.points_counted, m.points_meeting_slo, m.batch_sizes_tested, m.batch_sizes_meeting_slo, m.run_ids
FROM top AS t
CROSS JOIN params AS s
JOIN summary AS m USING (config_id)
JOIN low AS l USING (config_id)
LEFT JOIN pick AS p USING (config_id)
LEFT JOIN ties AS tie USING (config_id)
LEFT JOIN baseline AS b ON b.comparison_group = t.comparison_group
ORDER BY t.comparison_group, t.config_label;
