//! `gold.fct_sessions` for one session date. A session belongs to the date of
//! its first event but may run past midnight, so the following dates are
//! read for as long as one of the date's sessions can still be going on.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use super::silver_events::{SESSION_GAP_MICROS, session_id};
use crate::dates::{Day, day_of_micros, day_start};
use crate::error::Result;
use crate::io::{LakeIo, column, on_date};
use crate::tables::{GOLD_FCT_SESSIONS, SILVER_EVENTS};

struct Session {
    person_id: String,
    first: (i64, String),
    platform: String,
    start: i64,
    end: i64,
    events: i64,
}

/// Follows sessions at most this many dates past their start; a person
/// active every half hour for a week is a robot, not a session.
const MAX_FOLLOW_DAYS: i32 = 7;

pub async fn build(io: &LakeIo, day: Day) -> Result<RecordBatch> {
    let mut sessions: HashMap<String, Session> = HashMap::new();
    let mut read_day = day;
    loop {
        let filter = on_date("event_date", read_day);
        let batches = io
            .scan(
                &SILVER_EVENTS,
                &[
                    "session_id",
                    "person_id",
                    "event_ts",
                    "event_id",
                    "platform",
                ],
                Some(filter),
            )
            .await?;
        let mut latest_of_day = i64::MIN;
        for batch in &batches {
            let session = column::strings(batch, "session_id")?;
            let person = column::strings(batch, "person_id")?;
            let ts = column::micros(batch, "event_ts")?;
            let ids = column::strings(batch, "event_id")?;
            let platform = column::strings(batch, "platform")?;
            for i in 0..batch.num_rows() {
                let t = ts.value(i);
                let key = (t, ids.value(i));
                match sessions.get_mut(session.value(i)) {
                    Some(s) => {
                        if key < (s.first.0, s.first.1.as_str()) {
                            s.first = (t, ids.value(i).to_owned());
                            s.platform = platform.value(i).to_owned();
                        }
                        s.start = s.start.min(t);
                        s.end = s.end.max(t);
                        s.events += 1;
                        latest_of_day = latest_of_day.max(t);
                    }
                    None if read_day == day => {
                        sessions.insert(
                            session.value(i).to_owned(),
                            Session {
                                person_id: person.value(i).to_owned(),
                                first: (t, ids.value(i).to_owned()),
                                platform: platform.value(i).to_owned(),
                                start: t,
                                end: t,
                                events: 1,
                            },
                        );
                        latest_of_day = latest_of_day.max(t);
                    }
                    None => {}
                }
            }
        }
        // Sessions of `day` whose events reach the last half hour of the
        // date just read may go on into the next one.
        let next = read_day + 1;
        let continues = latest_of_day >= day_start(next) - SESSION_GAP_MICROS;
        if !continues || next - day > MAX_FOLLOW_DAYS {
            break;
        }
        read_day = next;
    }
    let mut rows: Vec<(String, Session)> = sessions
        .into_iter()
        // A session met first on `day` may have begun the date before (its
        // id then names an earlier first event): that date owns it.
        .filter(|(id, s)| {
            day_of_micros(s.first.0) == day && *id == session_id(&s.person_id, &s.first.1)
        })
        .collect();
    rows.sort_unstable_by(|a, b| (&a.1.person_id, a.1.start).cmp(&(&b.1.person_id, b.1.start)));
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|(id, _)| Some(id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|(_, s)| Some(s.person_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(Date32Array::from(vec![day; n])),
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|(_, s)| s.start).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|(_, s)| s.end).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(
            rows.iter()
                .map(|(_, s)| (s.end - s.start) as f64 / 1e6)
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|(_, s)| s.events).collect::<Vec<_>>(),
        )),
        Arc::new(
            rows.iter()
                .map(|(_, s)| Some(s.platform.as_str()))
                .collect::<StringArray>(),
        ),
    ];
    Ok(RecordBatch::try_new(
        GOLD_FCT_SESSIONS.arrow_schema(),
        columns,
    )?)
}
