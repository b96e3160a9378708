//! Hostile input for every RPC of a service, built from the descriptor set so a new RPC or
//! field is covered without a line of test code: each string field (nested ones too) gets a NUL
//! byte, an escape sequence, a bidirectional override, one byte more than its limit, and bytes
//! that are not UTF-8 (hand encoded, since no client library would send them); each RPC gets a
//! message larger than the server accepts and bytes that are not protobuf at all.

use std::str::FromStr;

use bytes::{Buf, BufMut};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::grpc::{authed, bad_field};

/// Passes request and response bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; buf.remaining()];
        buf.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// An RPC as the descriptors describe it.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// `/package.Service/Method`.
    pub path: String,
    pub server_streaming: bool,
    input: String,
}

impl Rpc {
    /// A unary call to any `path`, served or not (a made-up one, say).
    pub fn unary(path: impl Into<String>) -> Self {
        Self { path: path.into(), server_streaming: false, input: String::new() }
    }
}

/// Every RPC of the services in `packages` (e.g. `roster.identity.v1`).
pub fn rpcs(packages: &[&str]) -> Vec<Rpc> {
    descriptors()
        .file
        .iter()
        .filter(|file| packages.contains(&file.package()))
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| Rpc {
                    path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    server_streaming: method.server_streaming(),
                    input: method.input_type().to_owned(),
                })
            })
        })
        .collect()
}

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
}

fn message<'a>(set: &'a FileDescriptorSet, full_name: &str) -> Option<&'a DescriptorProto> {
    set.file
        .iter()
        .find_map(|file| file.message_type.iter().find(|m| format!(".{}.{}", file.package(), m.name()) == full_name))
}

/// A string field reachable from a request: its dotted path, the field numbers leading to it,
/// and its own name (which sets its limit).
#[derive(Debug, Clone)]
struct StringField {
    path: String,
    numbers: Vec<u32>,
    name: String,
}

fn string_fields(set: &FileDescriptorSet, type_name: &str, prefix: &str, numbers: &[u32]) -> Vec<StringField> {
    let Some(message) = message(set, type_name) else { return Vec::new() };
    let mut found = Vec::new();
    for field in &message.field {
        let path = if prefix.is_empty() { field.name().to_owned() } else { format!("{prefix}.{}", field.name()) };
        let chain = [numbers, &[field.number() as u32]].concat();
        match field.r#type() {
            Type::String => found.push(StringField { path, numbers: chain, name: field.name().to_owned() }),
            // Roster messages nest shallowly; three levels is far more than any request has.
            Type::Message if numbers.len() < 3 && field.label() != Label::Required => {
                found.extend(string_fields(set, field.type_name(), &path, &chain));
            }
            _ => {}
        }
    }
    found
}

/// `value` as a length-delimited field at the end of `numbers`, wrapped in each enclosing
/// message field (prost's own wire encoding).
fn encode_at(numbers: &[u32], value: &[u8]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    numbers.iter().rev().fold(value.to_vec(), |inner, number| {
        let mut out = Vec::with_capacity(inner.len() + 8);
        encode_key(*number, WireType::LengthDelimited, &mut out);
        encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(&inner);
        out
    })
}

/// Sends `body` as the request of `rpc` with a bearer token; only the status matters.
pub async fn call_raw(channel: &Channel, rpc: &Rpc, body: Vec<u8>, token: &str) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_str(&rpc.path).expect("path");
    let request = authed(body, token);
    if rpc.server_streaming {
        let mut stream = grpc.server_streaming(request, path, RawCodec).await?.into_inner();
        stream.message().await.map(drop)
    } else {
        grpc.unary(request, path, RawCodec).await.map(drop)
    }
}

/// Every hostile case against every RPC of `packages` on `channel`, called with `token` (a
/// caller who passes authentication). Returns the cases that were not refused as they should
/// be: `INVALID_ARGUMENT` naming the field for bad strings and undecodable bytes,
/// `RESOURCE_EXHAUSTED` for a message over `max_message_bytes`.
pub async fn refusals_that_went_wrong(
    channel: &Channel,
    packages: &[&str],
    token: &str,
    max_message_bytes: usize,
) -> Vec<String> {
    let set = descriptors();
    let mut wrong = Vec::new();
    let mut expect = |rpc: &Rpc, case: &str, got: Result<(), Status>, code: Code, field: Option<&str>| match got {
        Err(status) if status.code() == code && (field.is_none() || bad_field(&status).as_deref() == field) => {}
        other => wrong.push(format!("{} with {case}: {other:?}", rpc.path)),
    };
    let all = rpcs(packages);
    assert!(!all.is_empty(), "no RPCs in {packages:?}");
    for rpc in all {
        let fields = string_fields(&set, &rpc.input, "", &[]);
        for field in &fields {
            let limit = roster_proto::checked::max_bytes(&field.name);
            let cases: [(&str, Vec<u8>); 5] = [
                ("a NUL byte", b"a\0b".to_vec()),
                ("an escape sequence", b"\x1b[2J".to_vec()),
                ("a right-to-left override", "invoice\u{202E}fdp.exe".as_bytes().to_vec()),
                ("one byte over the limit", vec![b'x'; limit + 1]),
                ("invalid UTF-8", vec![b'a', 0xff, 0xfe]),
            ];
            for (case, value) in cases {
                let got = call_raw(channel, &rpc, encode_at(&field.numbers, &value), token).await;
                expect(&rpc, &format!("{case} in {}", field.path), got, Code::InvalidArgument, Some(&field.path));
            }
        }
        let got = call_raw(channel, &rpc, vec![0xff, 0xff, 0xff], token).await;
        expect(&rpc, "bytes that are not protobuf", got, Code::InvalidArgument, None);
        let oversize = encode_at(&[999], &vec![0; max_message_bytes + 1]);
        let got = call_raw(channel, &rpc, oversize, token).await;
        expect(&rpc, "a message over the size limit", got, Code::ResourceExhausted, None);
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_are_encoded_inside_their_parents() {
        // Field 4 holding field 1 = "ab".
        assert_eq!(encode_at(&[4, 1], b"ab"), vec![0x22, 0x04, 0x0a, 0x02, b'a', b'b']);
        let decoded = roster_proto::identity::v1::UnlinkUserRequest::decode(encode_at(&[4, 1], b"ab").as_slice())
            .expect("decode");
        assert_eq!(decoded.transfer.expect("transfer").target_user_id, "ab");
    }

    #[test]
    fn every_rpc_with_string_input_is_found() {
        let all = rpcs(&["roster.identity.v1"]);
        let unlink = all.iter().find(|r| r.path.ends_with("/UnlinkUser")).expect("UnlinkUser");
        let paths: Vec<String> =
            string_fields(&descriptors(), &unlink.input, "", &[]).into_iter().map(|f| f.path).collect();
        assert!(paths.contains(&"transfer.target_user_id".to_owned()), "{paths:?}");
        assert!(paths.contains(&"request_id".to_owned()));
    }
}
