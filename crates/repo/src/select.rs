//! Picking a point of a VM: the newest, one by id or id prefix, or the newest at or before a
//! time.

use blockvault_core::{PointId, RecoveryPoint, VmName};
use jiff::Timestamp;

use crate::{Error, Result};

/// Which point of a VM to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointSelector {
    /// The newest point.
    Latest,
    /// A point by id, or by a prefix of its id that only one point has.
    Id(String),
    /// The newest point taken at or before this time.
    At(Timestamp),
}

impl PointSelector {
    /// The point of `vm` this selector names among `points` (sorted oldest first, as listings
    /// return them).
    pub fn select<'a>(
        &self,
        vm: &VmName,
        points: &'a [RecoveryPoint],
    ) -> Result<&'a RecoveryPoint> {
        let Some(first) = points.first() else {
            return Err(Error::UnknownVm { vm: vm.clone() });
        };
        match self {
            PointSelector::Latest => Ok(&points[points.len() - 1]),
            PointSelector::Id(_) => {
                let ids: Vec<PointId> = points.iter().map(|p| p.id.clone()).collect();
                let id = self.select_id(vm, &ids)?;
                points
                    .iter()
                    .find(|p| &p.id == id)
                    .ok_or_else(|| Error::UnknownVm { vm: vm.clone() })
            }
            PointSelector::At(at) => {
                points
                    .iter()
                    .rev()
                    .find(|p| p.time <= *at)
                    .ok_or(Error::NoPointAtOrBefore {
                        vm: vm.clone(),
                        at: *at,
                        first: first.time,
                    })
            }
        }
    }

    /// The id among `ids` this selector names: the newest for `Latest`, the one equal to or
    /// uniquely starting with the text for `Id`. `At` needs the points' times: use
    /// [`PointSelector::select`].
    pub(crate) fn select_id<'a>(&self, vm: &VmName, ids: &'a [PointId]) -> Result<&'a PointId> {
        if ids.is_empty() {
            return Err(Error::UnknownVm { vm: vm.clone() });
        }
        let text = match self {
            PointSelector::Id(text) => text,
            _ => return Ok(&ids[ids.len() - 1]),
        };
        if let Some(exact) = ids.iter().find(|id| id.as_str() == text) {
            return Ok(exact);
        }
        let matching: Vec<&PointId> = ids
            .iter()
            .filter(|id| !text.is_empty() && id.as_str().starts_with(text.as_str()))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::UnknownPoint {
                vm: vm.clone(),
                point: text.clone(),
            }),
            many => Err(Error::AmbiguousPoint {
                vm: vm.clone(),
                prefix: text.clone(),
                count: many.len(),
            }),
        }
    }
}
