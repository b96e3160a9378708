//! Client-side helpers for service tests: bearer tokens on requests, unique request ids, and
//! reading the rich error details of a refusal.

use tonic_types::StatusExt;

/// Wraps a message with a bearer token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    request
}

/// A request id unique within the test process.
pub fn rid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("req-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `ErrorInfo.reason` of a refusal.
pub fn reason(status: &tonic::Status) -> String {
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

/// `ErrorInfo.metadata["code"]` of a refusal.
pub fn product_code(status: &tonic::Status) -> Option<String> {
    status.get_details_error_info().and_then(|info| info.metadata.get("code").cloned())
}

/// The field named by a `BadRequest` violation.
pub fn bad_field(status: &tonic::Status) -> Option<String> {
    status.get_details_bad_request().and_then(|bad| bad.field_violations.first().map(|v| v.field.clone()))
}
