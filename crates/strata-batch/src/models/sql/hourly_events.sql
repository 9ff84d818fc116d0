-- gold.hourly_events for one date: events of every type and distinct persons
-- per hour and event name.
SELECT date_trunc('hour', event_ts) AS hour,
       event_name,
       count(*) AS events,
       count(DISTINCT person_id) AS users,
       event_date
FROM events
WHERE event_date = DATE '{date}'
GROUP BY date_trunc('hour', event_ts), event_name, event_date
