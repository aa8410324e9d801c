//! What a policy's retention will remove of a VM's existing vault points: said at `protect`
//! time, so that protecting a VM never silently dooms its earlier points (three ad-hoc points
//! of one day lose two to the daily rule, which keeps the day's last).

use blockvault_core::{PointId, RecoveryPoint};
use blockvault_policy::{RetainedPoint, retention};
use jiff::Timestamp;
use serde::Serialize;

use crate::Policy;

/// A vault point the next prune removes under a policy, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DoomedPoint {
    pub id: PointId,
    pub time: Timestamp,
    /// Why no rule keeps it, in words.
    pub why: String,
}

/// The points of `points` (one VM's, in its vault) that retention under `policy` removes at
/// `now` with protection on, oldest first.
pub(super) fn doomed(
    points: &[RecoveryPoint],
    policy: &Policy,
    now: Timestamp,
) -> Vec<DoomedPoint> {
    let retained: Vec<RetainedPoint> = points.iter().map(RetainedPoint::from).collect();
    let tz = &policy.timezone;
    let mut doomed: Vec<DoomedPoint> = retention(&retained, policy, now, true)
        .into_iter()
        .filter(|verdict| !verdict.keep())
        .map(|verdict| {
            let day = tz.to_datetime(verdict.time).date();
            // The day's last point, which the daily rule keeps instead (ties go by id).
            let last = retained
                .iter()
                .filter(|p| tz.to_datetime(p.time).date() == day)
                .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
            let why = match last {
                Some(last) if last.id != verdict.id => format!(
                    "not the last point of {day} ({}): the daily rule keeps the day's last ({} \
                     at {})",
                    policy.timezone_name(),
                    last.id,
                    last.time
                ),
                _ => "older than every rule of the policy keeps a point".to_owned(),
            };
            DoomedPoint {
                id: verdict.id,
                time: verdict.time,
                why,
            }
        })
        .collect();
    doomed.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    doomed
}
