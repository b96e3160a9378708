//! An unauthenticated client that opens many request streams on several connections and never
//! finishes them (headers sent, body withheld) cannot starve normal calls: health and
//! reflection take no slot of the API's concurrency limit, each connection may open only the
//! streams the server advertises, and a withheld body is answered DEADLINE_EXCEEDED after the
//! body timeout rather than the full RPC timeout. Checked on `roster up --demo`, both services.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roster_e2e::{Process, authed, demo_env, free_port, wait_serving};
use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as lpb;

/// Attack connections per service; with the default 100 streams each that is 600 stalled
/// requests per service, more than the default concurrency limit of 512.
const CONNECTIONS: usize = 6;
/// Streams each connection opens: as many as the server advertises it may.
const STREAMS_PER_CONNECTION: usize = 100;
const ADVERTISED_STREAMS: usize = 100;
/// Long enough that a normal call stuck behind the stalled streams would visibly wait for it.
const BODY_TIMEOUT_MS: u64 = 6_000;
/// How long a normal call may take during the attack (they take milliseconds).
const NORMAL_CALL: Duration = Duration::from_millis(1_500);

/// A connection holding stalled streams: the responses to wait for, and the send halves that
/// must stay alive (dropping them would end the streams).
struct Stalled {
    responses: Vec<h2::client::ResponseFuture>,
    _bodies: Vec<h2::SendStream<bytes::Bytes>>,
    advertised: usize,
}

async fn stall(addr: SocketAddr) -> Stalled {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.expect("ready");
    // The server's SETTINGS arrive just after the handshake.
    let deadline = Instant::now() + Duration::from_secs(2);
    while send.current_max_send_streams() == usize::MAX && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let advertised = send.current_max_send_streams();
    let (mut responses, mut bodies) = (Vec::new(), Vec::new());
    for _ in 0..STREAMS_PER_CONNECTION {
        send = send.ready().await.expect("ready");
        let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, body) = send.send_request(request, false).expect("open a stream");
        responses.push(response);
        bodies.push(body);
    }
    Stalled { responses, _bodies: bodies, advertised }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_streams_on_many_connections_do_not_starve_normal_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let timeout = BODY_TIMEOUT_MS.to_string();
    let process = Process::start(dir.path(), addr, &["up", "--demo"], &[("ROSTER_REQUEST_BODY_TIMEOUT_MS", &timeout)]);
    let licensing = process.licensing.expect("licensing address");
    let identity_channel = wait_serving(addr, Duration::from_secs(60)).await.expect("identity serving");
    let licensing_channel = wait_serving(licensing, Duration::from_secs(60)).await.expect("licensing serving");
    let env = demo_env(dir.path(), Duration::from_secs(30)).await.expect("demo env");
    let (account, token) = (env["ACCOUNT"].clone(), env["MEMBER_TOKEN"].clone());

    let attack_started = Instant::now();
    let mut stalled = Vec::new();
    for target in [addr, licensing] {
        for _ in 0..CONNECTIONS {
            stalled.push(stall(target).await);
        }
    }
    for connection in &stalled {
        assert_eq!(connection.advertised, ADVERTISED_STREAMS, "the server advertises its stream cap");
    }

    // While all of that hangs, normal calls answer as usual (licensing also asks identity).
    let mut accounts = idpb::account_service_client::AccountServiceClient::new(identity_channel);
    let mut seats = lpb::license_service_client::LicenseServiceClient::new(licensing_channel);
    for _ in 0..20 {
        let read = accounts.get_account(authed(idpb::GetAccountRequest { account_id: account.clone() }, &token));
        tokio::time::timeout(NORMAL_CALL, read)
            .await
            .expect("GetAccount answered promptly during the attack")
            .expect("GetAccount");
        let read = seats.list_seats(authed(lpb::ListSeatsRequest { account_id: account.clone() }, &token));
        tokio::time::timeout(NORMAL_CALL, read)
            .await
            .expect("ListSeats answered promptly during the attack")
            .expect("ListSeats");
    }

    // The attack is bounded in time: every stalled stream is ended by the server once its body
    // has been missing for the body timeout.
    let answered_by = attack_started + Duration::from_millis(BODY_TIMEOUT_MS) + Duration::from_secs(8);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for connection in stalled {
        for response in connection.responses {
            let response = tokio::time::timeout_at(answered_by.into(), response)
                .await
                .expect("every stalled stream is answered soon after the body timeout")
                .expect("an HTTP response");
            let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap_or("?").to_owned());
            *statuses.entry(status.unwrap_or_else(|| "none".into())).or_default() += 1;
        }
    }
    assert_eq!(statuses.keys().collect::<Vec<_>>(), ["4"], "all DEADLINE_EXCEEDED: {statuses:?}");
}
