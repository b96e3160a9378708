//! Generated messages, clients and servers for every Roster API, and the descriptor set that
//! server reflection serves; `checked` holds the boundary check every request passes.

pub mod checked;
pub mod paged;

/// `roster.identity.v1`: accounts, users, roles, invitations and ownership.
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("roster.identity.v1");
    }
}

/// `roster.licensing.v1`: seats, assignments, phone numbers, licensed data and billing.
pub mod licensing {
    pub mod v1 {
        tonic::include_proto!("roster.licensing.v1");
    }
}

/// `roster.operations.v1`: long-running operations (sagas) and their progress.
pub mod operations {
    pub mod v1 {
        tonic::include_proto!("roster.operations.v1");
    }
}

/// `roster.events.v1`: the log of changes each service made, for the services acting on them.
pub mod events {
    // A stream item is an event or a heartbeat, each built, sent and dropped at once: boxing
    // the event would cost an allocation per event to save bytes nobody keeps.
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        tonic::include_proto!("roster.events.v1");
    }
}

/// `roster.dev.v1`: the manual clock of a development system.
pub mod dev {
    pub mod v1 {
        tonic::include_proto!("roster.dev.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Roster proto, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/roster_descriptor.bin"));
