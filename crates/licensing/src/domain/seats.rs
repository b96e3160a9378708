//! Seat capacity (SPEC R30): what may be assigned, and how far capacity may be lowered.

use super::error::DomainError;
use super::model::LicenseType;

/// The most seats of one type an account may hold; keeps every count well inside `u32`.
pub const MAX_CAPACITY: u32 = 1_000_000;

/// One more assignment of `license_type` when `assigned` of `capacity` are taken.
pub fn check_assign(license_type: LicenseType, capacity: u32, assigned: u32) -> Result<(), DomainError> {
    if assigned < capacity { Ok(()) } else { Err(DomainError::SeatsExhausted { license_type, capacity }) }
}

/// A new capacity is never below what is assigned: seats are taken back explicitly, never
/// silently by lowering a number.
pub fn check_capacity(license_type: LicenseType, capacity: u32, assigned: u32) -> Result<(), DomainError> {
    if capacity > MAX_CAPACITY {
        return Err(DomainError::invalid("capacity", format!("must be at most {MAX_CAPACITY}")));
    }
    if capacity < assigned {
        return Err(DomainError::CapacityBelowAssigned { license_type, assigned });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r30_the_last_seat_can_be_taken_and_no_more() {
        assert!(check_assign(LicenseType::Licensed, 10, 9).is_ok());
        assert_eq!(
            check_assign(LicenseType::Licensed, 10, 10),
            Err(DomainError::SeatsExhausted { license_type: LicenseType::Licensed, capacity: 10 })
        );
        assert!(check_assign(LicenseType::Webinar, 0, 0).is_err(), "no seats bought, none assigned");
    }

    #[test]
    fn r30_capacity_is_never_lowered_below_assignments() {
        assert!(check_capacity(LicenseType::Phone, 3, 3).is_ok());
        assert_eq!(
            check_capacity(LicenseType::Phone, 2, 3),
            Err(DomainError::CapacityBelowAssigned { license_type: LicenseType::Phone, assigned: 3 })
        );
        assert!(check_capacity(LicenseType::Phone, MAX_CAPACITY + 1, 0).is_err());
    }
}
