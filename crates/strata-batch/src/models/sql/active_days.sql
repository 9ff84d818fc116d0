-- silver.active_days for one date: persons with at least one track, page or
-- screen event (SPEC §4, Active). identify, alias and group do not count.
SELECT person_id,
       count(*) AS events,
       event_date
FROM events
WHERE event_date = DATE '{date}'
  AND event_type IN ('track', 'page', 'screen')
GROUP BY person_id, event_date
