//! SPEC R23, R34 over gRPC on SQLite and PostgreSQL: licensing answers a call naming another
//! account's user or phone number exactly as one naming a user or number that does not exist
//! (same status, reason, product code and message), whoever asks: an account's owner, or
//! identity's saga steps naming a transfer target.

mod support;

use roster_proto::licensing::v1 as pb;
use support::{TestApp, World, authed, product_code, reason, rid};

on_both_backends!(r34_users_and_numbers_elsewhere_read_as_nowhere);

const USER_CASES: &[&str] = &[
    "AssignLicense",
    "UnassignLicense",
    "ListAssignments",
    "AttachPhoneNumber",
    "ListContent",
    "TransferContent to",
    "PreviewUserRemoval to",
];

type Answer = (String, String, String, String);

fn answer_of(result: Result<(), tonic::Status>, named: &str) -> Answer {
    match result {
        Ok(()) => ("OK".into(), String::new(), String::new(), String::new()),
        Err(status) => (
            format!("{:?}", status.code()),
            reason(&status),
            product_code(&status).unwrap_or_default(),
            status.message().replace(named, "<named>"),
        ),
    }
}

/// `case` on my account naming user `named`: as my owner, or as identity for saga steps.
async fn ask_user(app: &TestApp, case: &str, mine: &World, named: &str) -> Result<(), tonic::Status> {
    let owner = app.user_token(&mine.owner);
    let identity = app.identity_token();
    let account = mine.account.clone();
    match case {
        "AssignLicense" => app
            .licenses()
            .assign_license(authed(
                pb::AssignLicenseRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: named.into(),
                    license_type: pb::LicenseType::Webinar as i32,
                },
                &owner,
            ))
            .await
            .map(drop),
        "UnassignLicense" => app
            .licenses()
            .unassign_license(authed(
                pb::UnassignLicenseRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: named.into(),
                    license_type: pb::LicenseType::Licensed as i32,
                },
                &owner,
            ))
            .await
            .map(drop),
        "ListAssignments" => app
            .licenses()
            .list_assignments(authed(
                pb::ListAssignmentsRequest { account_id: account, user_id: named.into(), ..Default::default() },
                &owner,
            ))
            .await
            .and_then(|listed| listed_nothing(listed.into_inner().assignments.len())),
        "AttachPhoneNumber" => {
            let serial: u64 = mine.phone.trim_start_matches("+3120").parse().expect("test number");
            app.licenses()
                .attach_phone_number(authed(
                    pb::AttachPhoneNumberRequest {
                        request_id: rid(),
                        account_id: account,
                        number: format!("+3120{:07}", serial + 1),
                        user_id: named.into(),
                    },
                    &owner,
                ))
                .await
                .map(drop)
        }
        "ListContent" => app
            .content()
            .list_content(authed(
                pb::ListContentRequest { account_id: account, owner_user_id: named.into(), ..Default::default() },
                &owner,
            ))
            .await
            .and_then(|listed| listed_nothing(listed.into_inner().items.len())),
        "TransferContent to" => app
            .content()
            .transfer_content(authed(
                pb::TransferContentRequest {
                    request_id: rid(),
                    account_id: account,
                    from_user_id: mine.member.clone(),
                    to_user_id: named.into(),
                    kinds: vec![pb::ContentKind::Recording as i32],
                },
                &identity,
            ))
            .await
            .map(drop),
        "PreviewUserRemoval to" => app
            .content()
            .preview_user_removal(authed(
                pb::PreviewUserRemovalRequest {
                    account_id: account,
                    user_id: mine.member.clone(),
                    to_user_id: named.into(),
                    kinds: vec![pb::ContentKind::Recording as i32],
                },
                &identity,
            ))
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

/// A list filtered by a user not in the account must come back empty (as for nobody); the
/// test counts anything else as the answer that differs.
fn listed_nothing(items: usize) -> Result<(), tonic::Status> {
    if items == 0 { Ok(()) } else { Err(tonic::Status::internal(format!("listed {items} items"))) }
}

async fn detach(app: &TestApp, mine: &World, number: &str) -> Result<(), tonic::Status> {
    app.licenses()
        .detach_phone_number(authed(
            pb::DetachPhoneNumberRequest { request_id: rid(), account_id: mine.account.clone(), number: number.into() },
            &app.user_token(&mine.owner),
        ))
        .await
        .map(drop)
}

async fn r34_users_and_numbers_elsewhere_read_as_nowhere(app: &TestApp) {
    let mine = app.seed_world().await;
    let theirs = app.seed_world().await;
    let mut differences = Vec::new();
    for case in USER_CASES {
        let nowhere = uuid::Uuid::now_v7().to_string();
        let elsewhere = answer_of(ask_user(app, case, &mine, &theirs.member).await, &theirs.member);
        let nowhere = answer_of(ask_user(app, case, &mine, &nowhere).await, &nowhere);
        let is_list = case.starts_with("List");
        if elsewhere.0 == "OK" && !is_list {
            differences.push(format!("{case}: another account's user was accepted"));
        } else if elsewhere != nowhere {
            differences.push(format!("{case}: elsewhere {elsewhere:?}, nowhere {nowhere:?}"));
        }
    }
    let elsewhere = answer_of(detach(app, &mine, &theirs.phone).await, &theirs.phone);
    let nowhere = "+31209999999";
    let nowhere = answer_of(detach(app, &mine, nowhere).await, nowhere);
    if elsewhere != nowhere {
        differences.push(format!("DetachPhoneNumber: elsewhere {elsewhere:?}, nowhere {nowhere:?}"));
    }
    assert!(differences.is_empty(), "answers that tell another account's objects apart:\n{}", differences.join("\n"));
}
