//! Ids for records listed newest first (audit trails): a UUIDv7 whose timestamp is the
//! record's own time, so ordering by id orders by the time the record shows.
//!
//! `Uuid::now_v7` takes the system clock when the row is inserted, while the record says when
//! its request started (and, in tests and the dev server, reads an injected clock): two calls
//! in flight together then listed out of order by the time they showed. Building the id from
//! the record's time makes the two one key. Below the millisecond, a counter this process
//! increments orders its records of one millisecond as they were made (uuid's own `ContextV7`
//! would not do: it never lets a timestamp go back, so a record stamped earlier than the last
//! one made would get the later time); the rest of the id is random.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::{Timestamp, Uuid};

/// Bits of the counter kept in the id, below the millisecond (as RFC 9562's method 1 does).
const COUNTER_BITS: u8 = 42;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A time-ordered id for a record made at `at_ms` (milliseconds since the epoch).
pub fn at(at_ms: i64) -> String {
    let at_ms = u64::try_from(at_ms).unwrap_or(0);
    let nanos = u32::try_from(at_ms % 1_000).unwrap_or(0) * 1_000_000;
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed) & ((1 << COUNTER_BITS) - 1);
    Uuid::new_v7(Timestamp::from_unix_time(at_ms / 1_000, nanos, u128::from(counter), COUNTER_BITS)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_their_times_whatever_order_they_are_made_in() {
        let later = at(1_793_491_200_005);
        let earlier = at(1_793_491_200_004);
        assert!(earlier < later, "{earlier} sorts before {later}");
        let same: Vec<String> = (0..1_000).map(|_| at(1_793_491_200_004)).collect();
        assert!(same.windows(2).all(|pair| pair[0] < pair[1]), "ids of one millisecond sort as they were made");
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
