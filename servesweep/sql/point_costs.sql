-- point_costs: every counted `points` row with its price and its SLO check. One row per point.
--
-- Counted: status 'ok' or 'partial' (failed points have no throughput), from the runs listed in
-- `selected_runs` (all runs when it is empty). Measured and predicted rows both appear; `source` tells them
-- apart and is part of every config, so predictions never mix with measurements.
--
-- A config is identified by what was measured, not by the run that measured it: points of one configuration
-- from different runs (a sweep split over two runs, or resumed) form one series in every view. When several
-- runs measured the same configuration at the same load, the newest measurement is kept (see `slotted` below
-- for the rule and why it is not pooled); `measured_by_runs` lists every run that measured the slot.
--
-- Columns: every `points` column but the sketches (*_sketch: `servesweep pooled` reads them from
-- `points`), plus
--   server_version, node_machine_type   from the `runs` table (null: the run has no fingerprint row)
--   config_key                     the measured identity as text: model and dtype, quantization, server kind and
--                                  version, accelerator, count and machine type, workload (name, source, api,
--                                  input/output lengths), sampling (temperature, top_p, top_k, min tokens,
--                                  ignore_eos, stop, extra fields), load (sweep mode, load kind, arrivals,
--                                  burstiness) and source; '?' = not recorded. Not the run id, not the batch.
--   config_id                      'cfg-' + the first 12 hex digits of md5(config_key): the key of a config
--   config_label                   readable config name (accelerator, model, quantization, server, lengths, sweep
--                                  mode); the server version is appended where configs of one label differ in
--                                  it, and ' #' + the config id's last 6 digits where they still collide
--   measured_by_runs               sorted run ids that measured this config at this load (more than one: the
--                                  newest row is this one, the others are superseded)
--   comparison_group               model + workload shape + source: configs in one group answer the same
--                                  question (serve this model for this traffic) and are compared
--   machine_type                   catalog machine the server lands on: the fewest GPUs that hold
--                                  accelerator_count, then the cheapest per GPU (catalog.hourly_cost)
--   cost_per_hour                  USD/hour: that machine's price per GPU-hour x accelerator_count
--                                  (cpu points join the catalog's `cpu` entry); null without a price
--   output_tokens_per_dollar       output_token_throughput x 3600 / cost_per_hour
--   usd_per_million_output_tokens  1e6 / output_tokens_per_dollar: the whole machine time over the output tokens
--   prefill_time_share             ttft_mean_ms / e2e_mean_ms (0-1): the share of a request's time before its
--                                  first token, billed to its input tokens; the rest is billed to its output
--   usd_per_million_input_tokens_split    1e6 x cost_per_hour x prefill_time_share / (input tok/s x 3600)
--   usd_per_million_output_tokens_split   1e6 x cost_per_hour x (1 - prefill_time_share) / (output tok/s x 3600):
--                                  the two prices a provider quotes; input x the first + output x the second
--                                  = the machine's cost of the point's tokens
--   price_source, price_date, catalog_version   where the price came from
--   pricing                        the pricing model of the price: on-demand, spot, cud-1y, cud-3y
--   meets_slo                      p99 TTFT, p99 TPOT and p99 E2E within the SLO bounds in `params`
--                                  (true when no bound is set; a bounded metric the point lacks is a miss),
--                                  and, for a point measured with a per-request SLO (goodput not null), at
--                                  least params.slo_min_attainment of its requests within it
--   slo_misses                     the bounds the point misses, e.g. 'ttft_p99 1200.0 > 500.0 ms'; null if none
--   slo_value                      what the ideal batch maximises: goodput (req/s) for a point with a
--                                  per-request SLO, else output_token_throughput
CREATE OR REPLACE VIEW point_costs AS
WITH selected AS (
    -- The runs table adds what the points rows lack: the server's version and, on GKE, the node's machine type.
    -- The sketches are per-point bins for `servesweep pooled`, which reads `points`; leaving them out keeps
    -- every view from reading the largest columns (benchmarks/lake/RESULTS.md).
    SELECT p.* EXCLUDE (ttft_sketch, tpot_sketch, itl_sketch, e2e_sketch), r.server_version, r.node_machine_type
    FROM points AS p
    LEFT JOIN (SELECT run_id, any_value(server_version) AS server_version,
                      any_value(node_machine_type) AS node_machine_type
               FROM runs GROUP BY run_id) AS r USING (run_id)
    WHERE p.status IN ('ok', 'partial')
      AND (p.run_id IN (SELECT run_id FROM selected_runs) OR NOT EXISTS (SELECT 1 FROM selected_runs))
),
identified AS (
    -- What was measured, never when or by which run: every field that changes what a point at a given load
    -- measures. '?' stands for unknown, and unknown is not equal to a known value (a run that did not record
    -- its server version does not merge with one that did).
    SELECT *,
        concat_ws(' | ',
            'model ' || coalesce(model_name, '?') || ' ' || coalesce(model_dtype, '?'),
            'quantization ' || coalesce(quantization, '?'),
            'server ' || coalesce(server_kind, '?') || ' ' || coalesce(server_version, '?'),
            'accelerator ' || coalesce(accelerator, '?') || ' x' || coalesce(CAST(accelerator_count AS VARCHAR), '1')
                || ' on ' || coalesce(node_machine_type, '?'),
            'workload ' || coalesce(workload_name, '?') || ' ' || coalesce(workload_source, '?') || ' '
                || coalesce(api, '?') || ' ' || coalesce(CAST(input_tokens AS VARCHAR), '?') || '/'
                || coalesce(CAST(output_tokens AS VARCHAR), '?'),
            'sampling ' || concat_ws(' ', coalesce(CAST(temperature AS VARCHAR), '?'),
                coalesce(CAST(top_p AS VARCHAR), '?'), coalesce(CAST(top_k AS VARCHAR), '?'),
                coalesce(CAST(min_output_tokens AS VARCHAR), '?'), coalesce(CAST(ignore_eos AS VARCHAR), '?'),
                coalesce(CAST(stop AS VARCHAR), '?'), coalesce(extra_request_fields, '?')),
            'load ' || coalesce(sweep_mode, '?') || ' ' || coalesce(load_kind, '?') || ' ' || coalesce(arrival, '?')
                || ' ' || coalesce(CAST(burstiness AS VARCHAR), '?'),
            'source ' || source
        ) AS config_key,
        concat_ws(' ',
            coalesce(accelerator, '?') || ' x' || coalesce(CAST(accelerator_count AS VARCHAR), '1'),
            coalesce(model_name, '?'), coalesce(quantization, '?'), coalesce(server_kind, '?'),
            coalesce(CAST(input_tokens AS VARCHAR), '?') || '/' || coalesce(CAST(output_tokens AS VARCHAR), '?'),
            coalesce(sweep_mode, '?'),
            CASE WHEN source <> 'measured' AND source IS DISTINCT FROM sweep_mode THEN '[' || source || ']' END
        ) AS base_label
    FROM selected
),
slotted AS (
    -- One slot = one configuration at one load (batch, rate, stage, concurrency, trace). Several runs measuring a
    -- slot (a sweep resumed, split, or run again) keep ONE row, by rule: the newest measurement (latest
    -- started_at; a resume's copy yields to the row it copied; then the later run id). Why not pool them: a
    -- point's intervals and `noisy` come from repeats interleaved within one run, and pooling across runs would
    -- mix days, drivers and cluster load into numbers that claim a within-run interval; a newer measurement of
    -- the same configuration is what the team would serve today. `servesweep compare` shows how the two differ.
    SELECT *,
        'cfg-' || left(md5(config_key), 12) AS config_id,
        row_number() OVER slot AS slot_rank,
        list_sort(list_distinct(list(run_id) OVER slot_all)) AS measured_by_runs
    FROM identified
    WINDOW slot AS (PARTITION BY config_key, batch_size, request_rate, ramp_to_rate, stage, concurrency, trace
                    ORDER BY started_at DESC NULLS LAST, reused_from_run IS NULL DESC, run_id DESC, point_id),
           slot_all AS (PARTITION BY config_key, batch_size, request_rate, ramp_to_rate, stage, concurrency, trace)
),
counted AS (
    SELECT * EXCLUDE (slot_rank) FROM slotted WHERE slot_rank = 1
),
labelled AS (
    -- Readable labels: the base label, then the server version where configs of one base label differ in it,
    -- then a short config id where they still collide (sampling, workload name, machine type...).
    SELECT *,
        base_label || CASE WHEN count(DISTINCT coalesce(server_version, '?')) OVER (PARTITION BY base_label) > 1
                           THEN ' ' || coalesce(server_kind, '?') || ' ' || coalesce(server_version, '?') ELSE '' END
            AS versioned_label
    FROM counted
),
machine AS (
    SELECT c.run_id, c.point_id, pr.machine_type, pr.price_per_gpu_hour, pr.price_source, pr.price_date,
           pr.catalog_version, pr.pricing
    FROM counted AS c
    JOIN prices AS pr ON pr.accelerator = c.accelerator AND pr.gpus >= coalesce(c.accelerator_count, 1)
    QUALIFY row_number() OVER (
        PARTITION BY c.run_id, c.point_id ORDER BY pr.gpus, pr.price_per_gpu_hour NULLS LAST, pr.machine_type
    ) = 1
),
priced AS (
    SELECT c.*, m.machine_type, m.price_per_gpu_hour * coalesce(c.accelerator_count, 1) AS cost_per_hour,
           m.price_source, m.price_date, m.catalog_version, m.pricing,
           CASE WHEN c.e2e_mean_ms > 0 AND c.ttft_mean_ms >= 0
                THEN least(greatest(c.ttft_mean_ms / c.e2e_mean_ms, 0.0), 1.0) END AS prefill_time_share
    FROM labelled AS c
    LEFT JOIN machine AS m USING (run_id, point_id)
),
checked AS (
    SELECT p.*,
        nullif(concat_ws('; ',
            CASE WHEN s.slo_ttft_p99_ms IS NULL THEN NULL
                 WHEN p.ttft_p99_ms IS NULL THEN format('ttft_p99 not measured (SLO {:.1f} ms)', s.slo_ttft_p99_ms)
                 WHEN p.ttft_p99_ms > s.slo_ttft_p99_ms
                     THEN format('ttft_p99 {:.1f} > {:.1f} ms', p.ttft_p99_ms, s.slo_ttft_p99_ms) END,
            CASE WHEN s.slo_tpot_p99_ms IS NULL THEN NULL
                 WHEN p.tpot_p99_ms IS NULL THEN format('tpot_p99 not measured (SLO {:.1f} ms)', s.slo_tpot_p99_ms)
                 WHEN p.tpot_p99_ms > s.slo_tpot_p99_ms
                     THEN format('tpot_p99 {:.1f} > {:.1f} ms', p.tpot_p99_ms, s.slo_tpot_p99_ms) END,
            CASE WHEN s.slo_e2e_p99_ms IS NULL THEN NULL
                 WHEN p.e2e_p99_ms IS NULL THEN format('e2e_p99 not measured (SLO {:.1f} ms)', s.slo_e2e_p99_ms)
                 WHEN p.e2e_p99_ms > s.slo_e2e_p99_ms
                     THEN format('e2e_p99 {:.1f} > {:.1f} ms', p.e2e_p99_ms, s.slo_e2e_p99_ms) END,
            CASE WHEN p.goodput IS NULL THEN NULL
                 WHEN coalesce(p.slo_attainment, 0) < s.slo_min_attainment
                     THEN format('slo_attainment {:.3f} < {:.3f}', coalesce(p.slo_attainment, 0),
                                 s.slo_min_attainment) END
        ), '') AS slo_misses
    FROM priced AS p CROSS JOIN params AS s
)
SELECT * EXCLUDE (base_label, versioned_label),
    CASE WHEN count(DISTINCT config_id) OVER (PARTITION BY versioned_label) > 1
         THEN versioned_label || ' #' || right(config_id, 6) ELSE versioned_label END AS config_label,
    concat_ws(' ', coalesce(model_name, '?'),
        coalesce(CAST(input_tokens AS VARCHAR), '?') || '/' || coalesce(CAST(output_tokens AS VARCHAR), '?'),
        source) AS comparison_group,
    CASE WHEN output_token_throughput > 0 AND cost_per_hour > 0
         THEN output_token_throughput * 3600 / cost_per_hour END AS output_tokens_per_dollar,
    CASE WHEN output_token_throughput > 0 AND cost_per_hour > 0
         THEN 1e6 * cost_per_hour / (output_token_throughput * 3600) END AS usd_per_million_output_tokens,
    CASE WHEN input_token_throughput > 0 AND cost_per_hour > 0 AND prefill_time_share IS NOT NULL
         THEN 1e6 * cost_per_hour * prefill_time_share / (input_token_throughput * 3600)
    END AS usd_per_million_input_tokens_split,
    CASE WHEN output_token_throughput > 0 AND cost_per_hour > 0 AND prefill_time_share IS NOT NULL
         THEN 1e6 * cost_per_hour * (1 - prefill_time_share) / (output_token_throughput * 3600)
    END AS usd_per_million_output_tokens_split,
    slo_misses IS NULL AS meets_slo,
    coalesce(goodput, output_token_throughput) AS slo_value
FROM checked;
