-- silver.identifies for one date: the identify events that carry a user id,
-- the only rows gold.dim_users reads (SPEC §3).
SELECT user_id,
       event_ts,
       event_id,
       traits,
       event_date
FROM events
WHERE event_date = DATE '{date}'
  AND event_type = 'identify'
  AND user_id IS NOT NULL
