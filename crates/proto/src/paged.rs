//! List requests, as page tokens see them: which list they ask (the request message names its
//! RPC), the page asked for, and the filter a token is bound to. build.rs implements
//! [`Paged`] for every request message with a `page_token` field.

/// A list RPC's request.
pub trait Paged: prost::Message + Clone {
    /// The request message's full proto name; it is the input of exactly one RPC.
    const LIST: &'static str;
    /// `page_size` as sent (0 means the default).
    fn page_size(&self) -> i64;
    fn page_token(&self) -> &str;
    /// The request with its page size and token cleared: what every page of one listing
    /// shares (the account, the filters), and so what a page token is bound to.
    fn filter(&self) -> Self;
}

include!(concat!(env!("OUT_DIR"), "/roster_paged.rs"));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::v1 as pb;

    #[test]
    fn the_filter_is_the_request_without_its_page() {
        let request = pb::ListUsersRequest {
            account_id: "a".into(),
            page_size: 7,
            page_token: "t".into(),
            status: pb::UserStatus::Active as i32,
            ..Default::default()
        };
        let filter = request.filter();
        assert_eq!((filter.page_size, filter.page_token.as_str()), (0, ""));
        assert_eq!((filter.account_id.as_str(), filter.status), ("a", pb::UserStatus::Active as i32));
        assert_eq!((request.page_size(), request.page_token()), (7, "t"));
        assert_eq!(pb::ListUsersRequest::LIST, "roster.identity.v1.ListUsersRequest");
        assert_ne!(
            crate::licensing::v1::ListAuditEventsRequest::LIST,
            pb::ListAuditEventsRequest::LIST,
            "each service's lists are its own"
        );
    }
}
