//! What the client commands (`roster ops`, `roster bulk`, `roster events`) share: where identity is, the bearer
//! token (from a flag or `ROSTER_TOKEN`, never a positional argument, so it stays out of
//! shell history and process listings), one connection, and refusals printed the way an
//! operator needs them.

use std::time::Duration;

use roster_platform::config::ConfigError;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::{Failure, runtime};

#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// Where identity's gRPC API is.
    #[arg(long = "identity-url", env = "ROSTER_IDENTITY_URL", default_value = "http://127.0.0.1:50051", global = true)]
    identity_url: String,
    /// Bearer token to call with.
    #[arg(long = "token", env = "ROSTER_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

/// A connection to identity and the token every request carries.
pub struct Remote {
    channel: Channel,
    authorization: MetadataValue<Ascii>,
}

impl Remote {
    /// Connects; a missing or unusable token is a configuration error (exit 64) saying how to
    /// mint one (`mint`).
    pub async fn connect(args: &RemoteArgs, mint: &str) -> Result<Self, Failure> {
        Self::connect_at(&args.identity_url, "ROSTER_IDENTITY_URL", args, mint).await
    }

    /// [`Remote::connect`] to the service at `url` (the setting `key` names), with `args`'s token.
    pub async fn connect_at(url: &str, key: &'static str, args: &RemoteArgs, mint: &str) -> Result<Self, Failure> {
        let token = args.token.as_deref().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            ConfigError::new(
                "ROSTER_TOKEN",
                format!(
                    "a bearer token is required (`{mint}` mints one with the keys in ROSTER_KEYS_DIR, `roster up`'s \
                     by default)"
                ),
            )
        })?;
        let authorization = format!("Bearer {token}").parse().map_err(|_| {
            ConfigError::new("ROSTER_TOKEN", "is not a token (it has characters a header cannot carry)")
        })?;
        let endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| ConfigError::new(key, e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| runtime(format!("cannot reach {url}: {e}")))?;
        Ok(Self { channel, authorization })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request
    }
}

/// A refusal as the operator needs it: the reason (or the gRPC code when there is none), the
/// product code and the field where they apply, and the message.
pub fn refused(status: tonic::Status) -> Failure {
    let info = status.get_details_error_info();
    let reason = match &info {
        Some(info) if !info.reason.is_empty() => info.reason.clone(),
        _ => format!("{:?}", status.code()),
    };
    let code = info.and_then(|i| i.metadata.get("code").cloned()).map(|c| format!(" (code {c})")).unwrap_or_default();
    let field = status
        .get_details_bad_request()
        .and_then(|bad| bad.field_violations.first().map(|v| format!(" [{}]", v.field)))
        .unwrap_or_default();
    runtime(format!("{reason}{code}{field}: {}", status.message()))
}
