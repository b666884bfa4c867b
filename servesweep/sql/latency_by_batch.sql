-- latency_by_batch: latency percentiles against batch size, one row per counted point, with the SLO check.
--
-- Columns:
--   run_id, config_id, config_label, comparison_group, source, accelerator, accelerator_count, quantization
--   batch_size, request_rate, point_id
--   ttft_p50_ms, ttft_p90_ms, ttft_p99_ms    time to first token (client-side, ms)
--   tpot_p50_ms, tpot_p90_ms, tpot_p99_ms    time per output token after the first
--   itl_p50_ms, itl_p99_ms                   pooled inter-token gaps
--   e2e_p50_ms, e2e_p99_ms                   end-to-end latency
--   ttft_p99_ci_low_ms ... e2e_p99_ci_high_ms   95 % intervals of the p50 and p99 columns (see points)
--   output_token_throughput_ci_low, output_token_throughput_ci_high
--   p99_few_requests, noisy, repeats         see points
--   slo_ttft_p99_ms, slo_tpot_p99_ms, slo_e2e_p99_ms   the bounds from `params` (null = not bounded)
--   meets_slo, slo_misses                    see point_costs
CREATE OR REPLACE VIEW latency_by_batch AS
SELECT c.run_id, c.config_id, c.config_label, c.comparison_group, c.source,
       c.accelerator, c.accelerator_count, c.quantization,
       c.batch_size, c.request_rate, c.point_id,
       c.ttft_p50_ms, c.ttft_p90_ms, c.ttft_p99_ms,
       c.tpot_p50_ms, c.tpot_p90_ms, c.tpot_p99_ms,
       c.itl_p50_ms, c.itl_p99_ms,
       c.e2e_p50_ms, c.e2e_p99_ms,
       c.ttft_p50_ci_low_ms, c.ttft_p50_ci_high_ms, c.ttft_p99_ci_low_ms, c.ttft_p99_ci_high_ms,
       c.tpot_p50_ci_low_ms, c.tpot_p50_ci_high_ms, c.tpot_p99_ci_low_ms, c.tpot_p99_ci_high_ms,
       c.e2e_p50_ci_low_ms, c.e2e_p50_ci_high_ms, c.e2e_p99_ci_low_ms, c.e2e_p99_ci_high_ms,
       c.output_token_throughput_ci_low, c.output_token_throughput_ci_high,
       c.p99_few_requests, c.noisy, c.repeats,
       s.slo_ttft_p99_ms, s.slo_tpot_p99_ms, s.slo_e2e_p99_ms,
       c.meets_slo, c.slo_misses
FROM point_costs AS c CROSS JOIN params AS s
ORDER BY c.config_label, c.batch_size, c.point_id;
