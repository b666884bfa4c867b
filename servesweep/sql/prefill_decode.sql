-- prefill_decode: prefill against decode speed per config, and whether the workload is prefill- or
-- decode-heavy. One row per config.
--
-- Measured at the config's smallest batch size (batch 1 in a normal sweep, so no queueing inflates TTFT),
-- and decode also at its largest batch size. Medians (p50) give the speeds; means give the time share
-- because mean E2E = mean TTFT + mean decode time per request.
--
-- Columns:
--   run_id, config_id, config_label, comparison_group, source, accelerator, accelerator_count, quantization
--   input_tokens, output_tokens              the workload shape (prompt and output lengths)
--   low_batch_size                           the smallest batch size of the config (1 in a normal sweep)
--   ttft_p50_ms                              median TTFT at low_batch_size
--   prefill_tokens_per_s                     input_tokens x 1000 / ttft_p50_ms: prompt tokens processed per
--                                            second (TTFT also holds queueing and the first decode step,
--                                            so this is a lower bound, tightest for long prompts)
--   tpot_p50_ms                              median TPOT at low_batch_size
--   decode_tokens_per_s                      1000 / tpot_p50_ms: output tokens per second of one sequence
--   max_batch_size                           the largest batch size of the config
--   tpot_p50_ms_max_batch                    median TPOT at max_batch_size
--   decode_tokens_per_s_per_sequence_max_batch   1000 / tpot_p50_ms_max_batch
--   decode_tokens_per_s_all_sequences_max_batch  max_batch_size x 1000 / tpot_p50_ms_max_batch
--   prefill_to_decode_ratio                  prefill_tokens_per_s / decode_tokens_per_s
--   ttft_share_of_e2e                        ttft_mean_ms / e2e_mean_ms at low_batch_size: the share of a
--                                            request's time spent before its first token
--   workload_balance                         'prefill-heavy' when ttft_share_of_e2e >= 0.5, else 'decode-heavy';
--                                            null when it cannot be computed
CREATE OR REPLACE VIEW prefill_decode AS
WITH ends AS (
    SELECT *,
        row_number() OVER (PARTITION BY config_id ORDER BY batch_size, point_id) AS from_low,
        row_number() OVER (PARTITION BY config_id ORDER BY batch_size DESC, point_id) AS from_high
    FROM point_costs
),
low AS (SELECT * FROM ends WHERE from_low = 1),
high AS (SELECT * FROM ends WHERE from_high = 1),
speeds AS (
    SELECT l.run_id, l.config_id, l.config_label, l.comparison_group, l.source,
           l.accelerator, l.accelerator_count, l.quantization, l.input_tokens, l.output_tokens,
           l.batch_size AS low_batch_size,
           l.ttft_p50_ms,
           l.input_tokens * 1000.0 / nullif(l.ttft_p50_ms, 0) AS prefill_tokens_per_s,
           l.tpot_p50_ms,
           1000.0 / nullif(l.tpot_p50_ms, 0) AS decode_tokens_per_s,
           h.batch_size AS max_batch_size,
           h.tpot_p50_ms AS tpot_p50_ms_max_batch,
           1000.0 / nullif(h.tpot_p50_ms, 0) AS decode_tokens_per_s_per_sequence_max_batch,
           h.batch_size * 1000.0 / nullif(h.tpot_p50_ms, 0) AS decode_tokens_per_s_all_sequences_max_batch,
           l.ttft_mean_ms / nullif(l.e2e_mean_ms, 0) AS ttft_share_of_e2e
    FROM low AS l JOIN high AS h USING (config_id)
)
SELECT *,
    prefill_tokens_per_s / decode_tokens_per_s AS prefill_to_decode_ratio,
    CASE WHEN ttft_share_of_e2e >= 0.5 THEN 'prefill-heavy'
         WHEN ttft_share_of_e2e < 0.5 THEN 'decode-heavy' END AS workload_balance
FROM speeds
ORDER BY comparison_group, config_label;
