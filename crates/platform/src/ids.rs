//! Ids for records listed newest first (audit trails): a UUIDv7 whose timestamp is the
//! record's own time, so ordering by id orders by the time the record shows.
//!
//! `Uuid::now_v7` takes the system clock when the row is inserted, while the record says when
//! its request started (and, in tests and the dev server, reads an injected clock): two calls
//! in flight together then listed out of order by the time they showed. Building the id from
//! the record's time makes the two one key; records of the same millisecond differ in the
//! random bits below it.

use uuid::{NoContext, Timestamp, Uuid};

/// A time-ordered id for a record made at `at_ms` (milliseconds since the epoch).
pub fn at(at_ms: i64) -> String {
    let at_ms = u64::try_from(at_ms).unwrap_or(0);
    let nanos = u32::try_from(at_ms % 1_000).unwrap_or(0) * 1_000_000;
    Uuid::new_v7(Timestamp::from_unix(NoContext, at_ms / 1_000, nanos)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_their_times_whatever_order_they_are_made_in() {
        let later = at(1_793_491_200_005);
        let earlier = at(1_793_491_200_004);
        assert!(earlier < later, "{earlier} sorts before {later}");
        let same: std::collections::BTreeSet<String> = (0..1_000).map(|_| at(1_793_491_200_004)).collect();
        assert_eq!(same.len(), 1_000, "ids of one millisecond are distinct");
        let before = at(1_793_491_200_003);
        assert!(same.iter().all(|id| *id > before && *id < later), "and sort between their neighbours");
    }

    #[test]
    fn the_id_carries_the_time() {
        let id = Uuid::parse_str(&at(1_793_491_200_123)).expect("uuid");
        let (seconds, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(seconds * 1_000 + u64::from(nanos / 1_000_000), 1_793_491_200_123);
    }
}
