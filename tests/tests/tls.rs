//! TLS with certificates made up here (rcgen): both services serve gRPC over TLS and call each
//! other over mutual TLS; a client of another CA, or with no certificate, is refused at the
//! handshake; a service token with a certificate not naming that service is refused; a
//! renewed certificate is served without a restart; and PostgreSQL is reached over TLS with
//! `sslmode=require` and with `verify-full` against its own certificate, while `verify-full`
//! against the wrong CA fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use roster_e2e::{Process, TestKeys, authed, free_port};
use roster_platform::auth::Principal;
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_testkit::FreshDatabase;
use rustls_pki_types::{CertificateDer, ServerName};
use sqlx::Connection;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

const START: Duration = Duration::from_secs(60);

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate for `names`, usable by a server and a client, as PEM (certificate, key).
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write");
    path
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn text(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

/// A gRPC channel over TLS to `addr` as `localhost`, trusting `ca`, presenting `client`.
async fn tls_channel(addr: SocketAddr, ca: &str, client: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5));
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// Health over a new TLS connection: `Ok(status)` or why the call failed.
async fn health(addr: SocketAddr, ca: &str, client: Option<&(String, String)>) -> Result<i32, String> {
    let channel = tls_channel(addr, ca, client).await?;
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(request)
        .await
        .map(|r| r.into_inner().status)
        .map_err(|e| format!("{e:?}"))
}

async fn wait_serving_tls(addr: SocketAddr, ca: &str, client: &(String, String)) {
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let started = Instant::now();
    loop {
        match health(addr, ca, Some(client)).await {
            Ok(status) if status == serving => return,
            other if started.elapsed() > START => panic!("{addr} not serving over TLS: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The certificate `addr` presents in a TLS handshake (made with `client`, as mutual TLS
/// requires).
async fn presented_certificate(addr: SocketAddr, ca: &str, client: &(String, String)) -> CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca")).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(client.0.as_bytes()).expect("cert")],
            rustls_pki_types::PrivateKeyDer::from_pem_slice(client.1.as_bytes()).expect("key"),
        )
        .expect("client auth");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone().into_owned()
}

fn reason(status: &tonic::Status) -> String {
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

#[tokio::test]
async fn both_services_talk_mutual_tls_and_refuse_strangers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    let (good, rogue) = (ca("Roster test CA"), ca("Somebody else's CA"));
    let ca_pem = good.pem();
    let ca_file = write(&pki, "ca.pem", &ca_pem);
    let identity_pair = leaf(&good, &["roster-identity", "localhost"]);
    let licensing_pair = leaf(&good, &["roster-licensing", "localhost"]);
    let client = leaf(&good, &["roster-ops"]);
    let stranger = leaf(&rogue, &["roster-identity"]);
    let (identity_cert, identity_key) =
        (write(&pki, "identity.pem", &identity_pair.0), write(&pki, "identity.key", &identity_pair.1));
    let (licensing_cert, licensing_key) =
        (write(&pki, "licensing.pem", &licensing_pair.0), write(&pki, "licensing.key", &licensing_pair.1));

    let keys = TestKeys::generate(dir.path());
    let user = |id: &str| keys.user(id);

    let identity_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let licensing_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (licensing_url, identity_url) =
        (format!("https://localhost:{}", licensing_addr.port()), format!("https://localhost:{}", identity_addr.port()));
    let identity_db = roster_e2e::identity_sqlite(&dir.path().join("identity"));
    let tls_env = |cert: &Path, key: &Path| {
        vec![
            ("ROSTER_TLS_CERT", text(cert)),
            ("ROSTER_TLS_KEY", text(key)),
            ("ROSTER_TLS_CLIENT_CA", text(&ca_file)),
            ("ROSTER_TLS_PEER_CA", text(&ca_file)),
        ]
    };
    let health_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut identity_env = tls_env(&identity_cert, &identity_key);
    identity_env.push(("ROSTER_LICENSING_URL", licensing_url));
    identity_env.push(("ROSTER_HEALTH_LISTEN", health_addr.to_string()));
    let mut licensing_env = tls_env(&licensing_cert, &licensing_key);
    licensing_env.push(("ROSTER_IDENTITY_URL", identity_url));
    let identity = Process::serve_identity(
        &dir.path().join("identity"),
        identity_addr,
        &identity_db,
        &keys.dir,
        licensing_addr,
        &borrowed(&identity_env),
    );
    let licensing = Process::serve_licensing(
        &dir.path().join("licensing"),
        licensing_addr,
        None,
        &keys.dir,
        identity_addr,
        &borrowed(&licensing_env),
    );
    wait_serving_tls(identity_addr, &ca_pem, &client).await;
    wait_serving_tls(licensing_addr, &ca_pem, &client).await;

    // Strangers are turned away at the handshake: another CA's certificate, or none.
    let refused = health(identity_addr, &ca_pem, Some(&stranger)).await;
    assert!(refused.is_err(), "a certificate of another CA is refused: {refused:?}");
    let refused = health(licensing_addr, &ca_pem, None).await;
    assert!(refused.is_err(), "no client certificate is refused: {refused:?}");
    let plain = roster_e2e::channel(identity_addr).await;
    let plain_answer = match plain {
        Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(plain_answer.is_err(), "plaintext gRPC is not served on a TLS port");
    // The kubelet's probes cannot speak TLS: health alone answers in plaintext on its own port.
    let probe = roster_e2e::wait_serving(health_addr, START).await.expect("the plaintext health port serves");
    let elsewhere = pb::account_service_client::AccountServiceClient::new(probe)
        .get_account(pb::GetAccountRequest { account_id: "acc_x".into() })
        .await
        .expect_err("nothing but health on the health port");
    assert_eq!(elsewhere.code(), tonic::Code::Unimplemented, "{elsewhere:?}");

    // A member, then a dry run: identity asks licensing over mutual TLS with its certificate,
    // and licensing asks identity who the caller is with its own.
    let channel = tls_channel(identity_addr, &ca_pem, Some(&client)).await.expect("channel");
    let (account, owner) =
        roster_e2e::create_account(&channel, &keys.operator(), "Encrypted", "owner@tls.example").await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&identity_db).await.expect("identity's SQLite");
    let member = roster_e2e::join(&channel, &mut db, &account, "member@tls.example", &user(&owner), user).await;
    let mut users = pb::user_service_client::UserServiceClient::new(channel);
    let dry_run = pb::DeactivateUserRequest {
        request_id: String::new(),
        account_id: account.clone(),
        user_id: member.clone(),
        validate_only: true,
    };
    let preview = users.deactivate_user(authed(dry_run, &user(&owner))).await.expect("dry run over mTLS");
    assert!(preview.into_inner().done);

    // A service token counts only with that service's certificate.
    let as_identity = keys.token(&Principal::Service { name: "identity".into() });
    let list = || lpb::ListAssignmentsRequest { account_id: account.clone(), ..Default::default() };
    let wrong_cert = tls_channel(licensing_addr, &ca_pem, Some(&client)).await.expect("channel");
    let refused = lpb::license_service_client::LicenseServiceClient::new(wrong_cert)
        .list_assignments(authed(list(), &as_identity))
        .await
        .expect_err("identity's token with the operator tool's certificate");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert_eq!(reason(&refused), "CERTIFICATE_NOT_FOR_SERVICE");
    let right_cert = tls_channel(licensing_addr, &ca_pem, Some(&identity_pair)).await.expect("channel");
    lpb::license_service_client::LicenseServiceClient::new(right_cert)
        .list_assignments(authed(list(), &as_identity))
        .await
        .expect("identity's token with identity's certificate");

    // A renewed certificate is served on new connections, without a restart.
    let before = presented_certificate(identity_addr, &ca_pem, &client).await;
    let renewed = leaf(&good, &["roster-identity", "localhost", "renewed.roster.example"]);
    std::fs::write(&identity_key, &renewed.1).expect("new key");
    std::fs::write(&identity_cert, &renewed.0).expect("new certificate");
    let renewed_der = {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(renewed.0.as_bytes()).expect("der")
    };
    let started = Instant::now();
    let mut now_served = before.clone();
    while now_served != renewed_der && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        now_served = presented_certificate(identity_addr, &ca_pem, &client).await;
    }
    assert_ne!(before, renewed_der);
    assert_eq!(now_served, renewed_der, "the renewed certificate is served");

    for mut process in [identity, licensing] {
        assert!(process.terminate(Duration::from_secs(15)).expect("stops").success());
    }
}

#[tokio::test]
async fn postgres_is_reached_over_tls_and_verify_full_checks_the_ca() {
    let Some(database) = FreshDatabase::create().await else { return };
    let mut admin = sqlx::AnyConnection::connect(&database.url).await.expect("connect");
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut admin).await.expect("show ssl");
    if ssl != "on" {
        // Debian's PostgreSQL has it on (with the snakeoil certificate); elsewhere set
        // `ssl = on` with `ssl_cert_file` and `ssl_key_file` in postgresql.conf and reload.
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "PostgreSQL must offer TLS when CI=true");
        roster_testkit::skipped("PostgreSQL over TLS (the server has ssl = off)");
        database.drop_database().await;
        return;
    }
    let required = Database::connect(&format!("{}?sslmode=require", database.url), 1).await.expect("sslmode=require");
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(required.pool())
        .await
        .expect("pg_stat_ssl");
    assert!(encrypted, "the connection is encrypted");
    required.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_ca = write(dir.path(), "ca.pem", &ca("Not PostgreSQL's CA").pem());
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", database.url, wrong_ca.display());
    let refused = Database::connect(&url, 1).await.map(|_| ()).expect_err("a server certificate of another CA");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");

    // And `verify-full` against the server's own certificate, where it is self-signed and
    // readable here, and names `localhost` (Debian's snakeoil certificate does).
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&mut admin).await.expect("cert file");
    match std::fs::read_to_string(&cert_file) {
        Ok(pem) if pem.contains("BEGIN CERTIFICATE") => {
            let url = format!(
                "{}?sslmode=verify-full&sslrootcert={cert_file}",
                database.url.replacen("127.0.0.1", "localhost", 1)
            );
            let verified = Database::connect(&url, 1).await.expect("verify-full against the server's certificate");
            let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(verified.pool())
                .await
                .expect("pg_stat_ssl");
            assert!(encrypted);
            verified.close().await;
        }
        _ => roster_testkit::skipped(&format!(
            "verify-full with the server's certificate ({cert_file} is not readable here)"
        )),
    }
    admin.close().await.ok();
    database.drop_database().await;
}
