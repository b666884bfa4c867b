-- throughput_by_batch: throughput against batch size, one row per counted point, ordered by config then batch.
--
-- Columns:
--   run_id, config_id, config_label, comparison_group, source   the config (see point_costs)
--   accelerator, accelerator_count, quantization, sweep_mode     config parts charts and filters use most
--   batch_size                       the swept batch size (client concurrency or server max_num_seqs)
--   request_rate, point_id           open-loop rate (null closed loop) and the point
--   output_token_throughput          output tok/s of the whole server
--   input_token_throughput, total_token_throughput, request_throughput
--   output_tokens_per_s_per_accelerator  output tok/s / accelerator_count
--   scaling_vs_smallest_batch        output tok/s / the config's output tok/s at its smallest batch size
--                                    (how much batching buys; 1.0 at the smallest batch)
--   output_tokens_per_dollar, usd_per_million_output_tokens   cost at this batch (see point_costs)
--   meets_slo                        see point_costs
CREATE OR REPLACE VIEW throughput_by_batch AS
SELECT run_id, config_id, config_label, comparison_group, source,
       accelerator, accelerator_count, quantization, sweep_mode,
       batch_size, request_rate, point_id,
       output_token_throughput, input_token_throughput, total_token_throughput, request_throughput,
       output_token_throughput / coalesce(accelerator_count, 1) AS output_tokens_per_s_per_accelerator,
       output_token_throughput / nullif(
           first(output_token_throughput ORDER BY batch_size, point_id) OVER (PARTITION BY config_id), 0
       ) AS scaling_vs_smallest_batch,
       output_tokens_per_dollar, usd_per_million_output_tokens, meets_slo
FROM point_costs
ORDER BY config_label, batch_size, point_id;
