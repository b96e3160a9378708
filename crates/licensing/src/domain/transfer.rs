//! Content transfer rules (SPEC R23): what moves, what stays, and what the target needs.

use std::collections::BTreeSet;
use strum::VariantArray;

use super::error::DomainError;
use super::model::{ContentItem, ContentKind, LicenseType};

/// The license a target needs to receive items of `kind`, if any.
pub fn required_license(kind: ContentKind) -> Option<LicenseType> {
    match kind {
        ContentKind::Recording => Some(LicenseType::Licensed),
        ContentKind::Webinar => Some(LicenseType::Webinar),
        ContentKind::Meeting | ContentKind::Event => None,
    }
}

/// Items that will move and items that stay (PMI meetings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferPlan {
    pub moving: Vec<ContentItem>,
    pub kept: Vec<ContentItem>,
}

/// Splits the source's items of the chosen kinds, refusing the whole transfer when the target
/// lacks a license that any moving item needs: either everything moves or nothing does.
pub fn plan(
    items: Vec<ContentItem>,
    kinds: &BTreeSet<ContentKind>,
    target_licenses: &BTreeSet<LicenseType>,
) -> Result<TransferPlan, DomainError> {
    let mut plan = TransferPlan::default();
    for item in items.into_iter().filter(|item| kinds.contains(&item.kind)) {
        if item.kind == ContentKind::Meeting && item.uses_pmi {
            plan.kept.push(item);
        } else {
            plan.moving.push(item);
        }
    }
    for kind in ContentKind::VARIANTS {
        if let Some(license_type) = required_license(*kind)
            && plan.moving.iter().any(|item| item.kind == *kind)
            && !target_licenses.contains(&license_type)
        {
            return Err(DomainError::TargetLacksLicense { kind: *kind, license_type });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Id;

    fn item(kind: ContentKind, uses_pmi: bool) -> ContentItem {
        ContentItem {
            id: Id::generate(),
            account_id: Id::generate(),
            owner_user_id: Id::generate(),
            kind,
            title: "t".into(),
            uses_pmi,
            created_at_ms: 0,
        }
    }

    fn all_kinds() -> BTreeSet<ContentKind> {
        ContentKind::VARIANTS.iter().copied().collect()
    }

    #[test]
    fn r23_pmi_meetings_never_move() {
        let plan = plan(
            vec![item(ContentKind::Meeting, true), item(ContentKind::Meeting, false)],
            &all_kinds(),
            &BTreeSet::new(),
        )
        .expect("meetings need no license");
        assert_eq!((plan.moving.len(), plan.kept.len()), (1, 1));
        assert!(!plan.moving[0].uses_pmi);
    }

    #[test]
    fn r23_recordings_need_a_licensed_target_and_webinars_a_webinar_seat() {
        let recordings = vec![item(ContentKind::Recording, false)];
        assert_eq!(
            plan(recordings.clone(), &all_kinds(), &[LicenseType::Webinar].into()),
            Err(DomainError::TargetLacksLicense { kind: ContentKind::Recording, license_type: LicenseType::Licensed })
        );
        assert!(plan(recordings, &all_kinds(), &[LicenseType::Licensed].into()).is_ok());
        let webinars = vec![item(ContentKind::Webinar, false)];
        assert_eq!(
            plan(webinars.clone(), &all_kinds(), &[LicenseType::Licensed].into()),
            Err(DomainError::TargetLacksLicense { kind: ContentKind::Webinar, license_type: LicenseType::Webinar })
        );
        assert!(plan(webinars, &all_kinds(), &[LicenseType::Webinar].into()).is_ok());
    }

    #[test]
    fn r23_one_kind_lacking_a_license_refuses_everything() {
        let items = vec![item(ContentKind::Event, false), item(ContentKind::Recording, false)];
        assert!(plan(items, &all_kinds(), &BTreeSet::new()).is_err());
    }

    #[test]
    fn kinds_not_chosen_stay_and_need_nothing() {
        let items = vec![item(ContentKind::Event, false), item(ContentKind::Recording, false)];
        let plan = plan(items, &[ContentKind::Event].into(), &BTreeSet::new()).expect("events only");
        assert_eq!(plan.moving.len(), 1);
        assert!(plan.kept.is_empty());
    }
}
