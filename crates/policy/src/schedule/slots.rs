//! From civil times to the instants backups run at: daylight saving resolved as the module
//! doc of `schedule` says (a skipped time runs at the transition, a repeated one once, first;
//! two civil times on one instant run once).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::{Schedule, Slot, add_days};

/// The instant a civil time `dt` in `tz` runs at (see the module doc): the only instant when
/// unambiguous; the earlier of the two in a fold; the instant of the transition in a gap.
/// `None` only when the instant is outside jiff's range.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        // `before` is the offset in force before the transition: the larger one when the
        // clocks go back, so this is the first occurrence.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, after } => {
            // The gap is the civil interval [G, G + (after - before)); the transition instant
            // T is G read with `before` (equivalently G + (after - before) read with `after`).
            // `dt` read with `after` lies strictly before T and `dt` read with `before` (what
            // jiff's `compatible()` gives, e.g. 03:30 for 02:30) lies at or after it, so T is
            // the first transition after the former.
            let earliest = after.to_timestamp(dt).ok()?;
            let latest = before.to_timestamp(dt).ok()?;
            match tz.following(earliest).next() {
                Some(transition) if transition.timestamp() <= latest => {
                    Some(transition.timestamp())
                }
                // Unreachable with a consistent time zone; the latest candidate is still a
                // valid instant after the gap.
                _ => Some(latest),
            }
        }
    }
}

impl Schedule {
    /// Every slot of the days `first` to `last` (inclusive) started, resolved, in time order,
    /// with the slots that resolve to an instant already taken by an earlier civil time removed.
    fn resolved(&self, tz: &TimeZone, first: Date, last: Date) -> Vec<Slot> {
        let mut slots = Vec::new();
        let mut date = first;
        while date <= last {
            slots.extend(
                self.civil_runs(date).into_iter().filter_map(|scheduled| {
                    resolve(tz, scheduled).map(|at| Slot { at, scheduled })
                }),
            );
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        // Slots order by instant, then by civil time: of the slots sharing an instant the
        // first kept is the earliest civil time.
        slots.sort_unstable();
        slots.dedup_by_key(|slot| slot.at);
        slots
    }

    /// The slots whose instant is in (`after`, `until`], in time order, without duplicates
    /// (two civil times resolving to one instant give the slot of the earlier one).
    ///
    /// Empty when `until` <= `after`. The work is proportional to the number of local days
    /// between the two instants.
    pub fn slots(&self, tz: &TimeZone, after: Timestamp, until: Timestamp) -> Vec<Slot> {
        if until <= after {
            return Vec::new();
        }
        // A slot whose instant is after `after` is scheduled no earlier than the day before
        // the local date of `after` (a gap moves a run forward, never back) and is started by
        // that day or the one before it (hourly runs roll over midnight). One more day either
        // way covers a gap of up to a day (Pacific/Apia skipped 2011-12-30).
        let first = add_days(tz.to_datetime(after).date(), -2);
        let last = add_days(tz.to_datetime(until).date(), 1);
        let mut slots = self.resolved(tz, first, last);
        slots.retain(|slot| after < slot.at && slot.at <= until);
        slots
    }

    /// The first slot strictly after `after`: the first of
    /// [`slots`](Self::slots)`(tz, after, until)` for any `until` far enough ahead.
    ///
    /// # Panics
    ///
    /// If there is no slot in the 16 days after `after`: only for a weekly schedule without
    /// days, which policy validation refuses, or within 16 days of the end of jiff's range
    /// (year 9999).
    pub fn next(&self, tz: &TimeZone, after: Timestamp) -> Slot {
        // A weekly schedule with one day has a slot at most 7 days (plus a gap or a fold) on.
        for days in [9, 16] {
            let until = after
                .saturating_add(jiff::SignedDuration::from_hours(24 * days))
                .unwrap_or(Timestamp::MAX);
            if let Some(slot) = self.slots(tz, after, until).first() {
                return *slot;
            }
        }
        panic!("schedule {self:?} has no slot in the 16 days after {after}")
    }

    /// The slots scheduled on the local date `date` (`Slot::scheduled.date() == date`), in
    /// order.
    ///
    /// For an hourly schedule this includes the runs of the previous day's window that roll
    /// over midnight onto `date`, and excludes the runs of this day's window that roll onto
    /// the next day. A slot removed as a duplicate (its instant taken by an earlier civil
    /// time, possibly of the previous day) is not included.
    pub fn slots_on(&self, tz: &TimeZone, date: Date) -> Vec<Slot> {
        let mut slots = self.resolved(tz, add_days(date, -2), date);
        slots.retain(|slot| slot.scheduled.date() == date);
        slots
    }
}
