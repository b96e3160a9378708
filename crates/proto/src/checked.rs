//! The boundary check every request passes before a handler sees it: each string field is
//! valid UTF-8, free of control characters and within its length limit, and a message that
//! does not decode is `INVALID_ARGUMENT` naming the field, never `INTERNAL`.
//!
//! Servers decode through [`CheckedCodec`] (build.rs sets it as the codec of every generated
//! service), so a new RPC is covered without a line of handler code. The walk over each
//! message's string fields is generated from the descriptors in build.rs; the rules per field
//! live here in [`max_bytes`]. Handlers' conversions (`convert.rs`) still parse what a field
//! means (an e-mail, an id); this layer only keeps bytes out that no field may hold: NUL reaches
//! PostgreSQL as an encoding error, and a megabyte in an id costs memory and log space.

use std::collections::HashMap;
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Roster error.
pub const ERROR_DOMAIN: &str = "roster";

/// A string field that broke a rule: its dotted path in the request and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    fn new(field: &str, description: String) -> Self {
        Self { field: field.to_owned(), description }
    }

    /// The same violation seen from the message that holds the nested field.
    pub fn within(self, outer: &str) -> Self {
        Self { field: format!("{outer}.{}", self.field), ..self }
    }
}

/// Implemented by build.rs for every Roster message.
pub trait StringFields {
    /// True for the request message of some RPC. Only those are checked as they are decoded,
    /// so a client decoding a response (which may carry any text) checks nothing.
    const CHECKED_ON_DECODE: bool;

    /// Passes each string field's name and value to `check`, nested fields as `outer.inner`,
    /// and stops at the first refusal.
    fn check_strings(&self, check: &mut dyn FnMut(&'static str, &str) -> Result<(), String>) -> Result<(), Violation>;
}

fn check_one(
    name: &'static str,
    value: &str,
    check: &mut dyn FnMut(&'static str, &str) -> Result<(), String>,
) -> Result<(), Violation> {
    check(name, value).map_err(|why| Violation::new(name, why))
}

include!(concat!(env!("OUT_DIR"), "/roster_string_fields.rs"));

/// The longest value a string field may hold, in bytes, by the field's name. Ids and request ids
/// are UUIDs or client tokens well under 128 bytes; e-mail addresses are at most 254 bytes
/// (RFC 5321's path limit); page tokens are ours; free text (names, titles) is limited in
/// characters by the handlers, which fits in 1 KiB of UTF-8.
pub fn max_bytes(field: &str) -> usize {
    match field {
        "page_token" => 1_024,
        "code" | "kind" | "currency" => 128,
        "number" | "phone_number" => 64,
        name if name == "id" || name.ends_with("_id") => 128,
        name if name.ends_with("email") => 320,
        _ => 1_024,
    }
}

/// The rules every string field of every request obeys.
pub fn check_field(field: &str, value: &str) -> Result<(), String> {
    let limit = max_bytes(field);
    if value.len() > limit {
        return Err(format!("is {} bytes long; at most {limit} are accepted", value.len()));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| is_forbidden_char(*c)) {
        let what = if c.is_control() { "control" } else { "bidirectional-override" };
        return Err(format!("must not contain {what} characters (U+{:04X} at byte {at})", u32::from(c)));
    }
    Ok(())
}

/// Characters no string Roster accepts may hold: control characters (C0, DEL, C1) and the
/// bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
/// make a name or note display as something other than what it holds ("Trojan Source").
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `INVALID_ARGUMENT` with an `ErrorInfo` (reason `INVALID_ARGUMENT`) and a `BadRequest` naming
/// the field. The platform's error helpers build their field errors with this too.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
    details.add_bad_request_violation(field, description.clone());
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {description}"), details)
}

/// The field a prost decode error is about, as a dotted path from the request (`transfer.to`),
/// and what went wrong. prost reports the path innermost first, in its `Display` text:
/// `failed to decode Protobuf message: Inner.field: Outer.field: description`.
fn decode_failure(error: &prost::DecodeError) -> (String, String) {
    let text = error.to_string();
    let mut rest = text.strip_prefix("failed to decode Protobuf message: ").unwrap_or(&text);
    let mut path = Vec::new();
    while let Some((segment, after)) = rest.split_once(": ") {
        let Some((message, field)) = segment.split_once('.') else { break };
        let is_ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_ident(message) || !is_ident(field) {
            break;
        }
        path.push(field);
        rest = after;
    }
    path.reverse();
    let field = if path.is_empty() { "request".to_owned() } else { path.join(".") };
    (field, format!("cannot be decoded: {rest}"))
}

/// `application/grpc+proto` through prost, with every decoded request checked by
/// [`check_field`]. Encoding is prost's own.
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        Self { _messages: PhantomData }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + StringFields + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { _message: PhantomData }
    }
}

/// Decodes with prost, then runs the string check on request messages.
#[derive(Debug)]
pub struct CheckedDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default + StringFields> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let message = U::decode(buf).map_err(|error| {
            let (field, description) = decode_failure(&error);
            invalid_argument(&field, description)
        })?;
        if U::CHECKED_ON_DECODE {
            message
                .check_strings(&mut check_field)
                .map_err(|violation| invalid_argument(&violation.field, violation.description))?;
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::v1 as pb;

    #[test]
    fn nul_control_characters_and_oversize_values_are_refused_by_field() {
        assert!(check_field("request_id", "r-1").is_ok());
        assert!(check_field("display_name", "Zoë Ångström 😀").is_ok());
        assert!(check_field("request_id", "a\0b").expect_err("NUL").contains("U+0000"));
        assert!(check_field("display_name", "line\nbreak").is_err());
        assert!(check_field("display_name", "\u{7f}").is_err());
        for bidi in ['\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}'] {
            let refused = check_field("note", &format!("invoice{bidi}fdp.exe")).expect_err("bidi override");
            assert!(refused.contains("bidirectional-override"), "{refused}");
        }
        assert!(check_field("note", "\u{2065}\u{202F}").is_ok(), "the neighbours of the ranges are fine");
        assert!(check_field("custom_role_id", &"x".repeat(129)).is_err());
        assert!(check_field("kind", &"k".repeat(1 << 20)).is_err());
        assert!(check_field("page_token", &"p".repeat(1_024)).is_ok());
        assert!(check_field("page_token", &"p".repeat(1_025)).is_err());
    }

    #[test]
    fn nested_and_repeated_fields_are_named_by_path() {
        let request = pb::UnlinkUserRequest {
            request_id: "r".into(),
            transfer: Some(pb::ContentTransfer { target_user_id: "t\0".into(), ..Default::default() }),
            ..Default::default()
        };
        let violation = request.check_strings(&mut check_field).expect_err("nested NUL");
        assert_eq!(violation.field, "transfer.target_user_id");

        let request = pb::CreateAccountRequest {
            managed_domains: vec!["ok.example".into(), "bad\u{1}".into()],
            ..Default::default()
        };
        assert_eq!(request.check_strings(&mut check_field).expect_err("repeated").field, "managed_domains");
        const { assert!(pb::CreateAccountRequest::CHECKED_ON_DECODE) };
        const { assert!(!pb::Account::CHECKED_ON_DECODE) };
    }

    #[test]
    fn decode_errors_name_the_field_path() {
        // Field 3 (email) as a length-delimited string holding an invalid UTF-8 byte.
        let bytes = [0x1a, 0x02, b'a', 0xff];
        let error = pb::InviteUserRequest::decode(&bytes[..]).expect_err("invalid UTF-8");
        let (field, description) = decode_failure(&error);
        assert_eq!(field, "email");
        assert!(description.contains("UTF-8"), "{description}");

        // UnlinkUserRequest.transfer (field 4) holding ContentTransfer.target_user_id (1).
        let bytes = [0x22, 0x03, 0x0a, 0x01, 0xc0];
        let error = pb::UnlinkUserRequest::decode(&bytes[..]).expect_err("nested invalid UTF-8");
        assert_eq!(decode_failure(&error).0, "transfer.target_user_id");

        let error = pb::InviteUserRequest::decode(&[0xff][..]).expect_err("garbage");
        assert_eq!(decode_failure(&error).0, "request");
    }
}
