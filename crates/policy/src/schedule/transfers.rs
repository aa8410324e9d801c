//! Which backups of a schedule go to the vault.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{Schedule, Slot};

/// Whether the backup of `slot` is transferred to the vault (the Enhanced hourly rule of
/// SPEC.md "Policies").
///
/// For daily and weekly schedules every backup is. For an hourly schedule the last slot of each
/// local day (the last of [`Schedule::slots_on`] the date of `slot.scheduled`) is, and so is
/// the first slot of a day when the previous day's last backup did not reach the vault: when
/// `newest_vault_point` (the time of the VM's newest vault point, `None` if it has none) is
/// before the instant of the previous day's last slot. When the previous day has no slot, the
/// first slot is transferred. Any other slot, including one that is not a slot of `schedule`
/// on its date, is not transferred.
pub fn transfers(
    schedule: &Schedule,
    tz: &TimeZone,
    slot: &Slot,
    newest_vault_point: Option<Timestamp>,
) -> bool {
    if !matches!(schedule, Schedule::Hourly { .. }) {
        return true;
    }
    let date = slot.scheduled.date();
    let day = schedule.slots_on(tz, date);
    if day.last() == Some(slot) {
        return true;
    }
    if day.first() != Some(slot) {
        return false;
    }
    let previous_last = date
        .yesterday()
        .ok()
        .and_then(|yesterday| schedule.slots_on(tz, yesterday).last().copied());
    match (previous_last, newest_vault_point) {
        (Some(previous), Some(newest)) => newest < previous.at,
        _ => true,
    }
}
