//! Licensing over loopback sockets with real tonic clients and a real identity server, on
//! SQLite and PostgreSQL: seats and assignment (R30, R31), phone numbers (R4), reclaim and
//! restore (R18, R19), content transfer (R21-R23), billing and refunds (R5, R28).

mod support;

use pb::LicenseType as L;
use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use support::{TestApp, World, authed, product_code, reason, rid};
use tonic::Code;

on_both_backends!(
    r30_r31_seats_bound_assignments_to_active_members,
    r4_r31_phone_numbers_follow_phone_licenses,
    r18_r19_r32_reclaim_holds_and_restore_gives_back_exactly,
    r18_r32_a_reclaim_batch_answers_each_item_as_its_own_call_would,
    r21_r23_transfer_is_all_or_nothing_and_undoable,
    r18_r23_a_removal_preview_tells_what_the_steps_would_do_and_changes_nothing,
    r22_delete_removes_what_remains,
    r5_billing_is_the_current_owners_alone,
    r28_refund_the_unused_remainder_once,
    r33_changes_and_refusals_are_audited,
    r33_the_audit_trail_lists_concurrent_events_newest_first,
    r34_objects_of_another_account_do_not_exist_here,
);

fn seats(account: &str, license_type: L, capacity: u32) -> pb::SetSeatsRequest {
    pb::SetSeatsRequest { request_id: rid(), account_id: account.into(), license_type: license_type as i32, capacity }
}

fn assign(account: &str, user: &str, license_type: L) -> pb::AssignLicenseRequest {
    pb::AssignLicenseRequest {
        request_id: rid(),
        account_id: account.into(),
        user_id: user.into(),
        license_type: license_type as i32,
    }
}

async fn licenses_of(app: &TestApp, w: &World, user: &str) -> Vec<L> {
    let listed = app
        .licenses()
        .list_assignments(authed(
            pb::ListAssignmentsRequest { account_id: w.account.clone(), user_id: user.into(), ..Default::default() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("list")
        .into_inner();
    listed.assignments.iter().map(|a| a.license_type()).collect()
}

async fn pool(app: &TestApp, w: &World, license_type: L) -> pb::SeatPool {
    let all = app
        .licenses()
        .list_seats(authed(pb::ListSeatsRequest { account_id: w.account.clone() }, &app.user_token(&w.member)))
        .await
        .expect("seats")
        .into_inner();
    all.seats.into_iter().find(|p| p.license_type() == license_type).expect("every type is listed")
}

async fn r30_r31_seats_bound_assignments_to_active_members(app: &TestApp) {
    let w = app.seed_world().await;
    let other = app.seed_world().await;
    let (owner, admin) = (app.user_token(&w.owner), app.user_token(&w.admin));
    let extra = app.add_members(&w, 1).await.remove(0);
    app.licenses().set_seats(authed(seats(&w.account, L::LargeMeeting, 2), &owner)).await.expect("buy two");
    let first = assign(&w.account, &w.member, L::LargeMeeting);
    let granted = app.licenses().assign_license(authed(first.clone(), &admin)).await.expect("one").into_inner();
    // R32: a retried assignment returns the first answer and takes no second seat.
    let retried = app.licenses().assign_license(authed(first, &admin)).await.expect("replay").into_inner();
    assert_eq!(retried, granted);
    assert_eq!(pool(app, &w, L::LargeMeeting).await.assigned, 1);
    app.licenses().assign_license(authed(assign(&w.account, &extra, L::LargeMeeting), &admin)).await.expect("two");
    let full = app
        .licenses()
        .assign_license(authed(assign(&w.account, &w.admin, L::LargeMeeting), &admin))
        .await
        .expect_err("third seat");
    assert_eq!(
        (full.code(), reason(&full), product_code(&full)),
        (Code::FailedPrecondition, "SEATS_EXHAUSTED".into(), Some("200".into()))
    );
    let twice = app
        .licenses()
        .assign_license(authed(assign(&w.account, &w.member, L::LargeMeeting), &admin))
        .await
        .expect_err("already held");
    assert_eq!(reason(&twice), "LICENSE_ALREADY_ASSIGNED");
    let lower =
        app.licenses().set_seats(authed(seats(&w.account, L::LargeMeeting, 1), &owner)).await.expect_err("below");
    assert_eq!(reason(&lower), "CAPACITY_BELOW_ASSIGNED");
    let by_admin =
        app.licenses().set_seats(authed(seats(&w.account, L::LargeMeeting, 5), &admin)).await.expect_err("admin buys");
    assert_eq!(reason(&by_admin), "NOT_ACCOUNT_OWNER");
    assert_eq!((pool(app, &w, L::LargeMeeting).await.capacity, pool(app, &w, L::LargeMeeting).await.assigned), (2, 2));

    // R31: pending and deactivated users hold nothing; users of other accounts do not exist here.
    app.licenses().set_seats(authed(seats(&w.account, L::Rooms, 10), &owner)).await.expect("rooms");
    for (user, expected) in
        [(&w.pending, "USER_NOT_ACTIVE"), (&w.deactivated, "USER_NOT_ACTIVE"), (&other.member, "USER_NOT_FOUND")]
    {
        let refused = app
            .licenses()
            .assign_license(authed(assign(&w.account, user, L::Rooms), &admin))
            .await
            .expect_err(expected);
        assert_eq!(reason(&refused), expected);
    }
    let member = app
        .licenses()
        .assign_license(authed(assign(&w.account, &w.member, L::Rooms), &app.user_token(&w.member)))
        .await
        .expect_err("members do not manage licenses");
    assert_eq!(reason(&member), "MISSING_PRIVILEGE");
    assert_eq!(pool(app, &w, L::Rooms).await.assigned, 0, "no refused assignment landed");

    // Unassigning frees the seat for someone else.
    let freed = app
        .licenses()
        .unassign_license(authed(
            pb::UnassignLicenseRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: extra.clone(),
                license_type: L::LargeMeeting as i32,
            },
            &admin,
        ))
        .await
        .expect("unassign");
    assert_eq!(freed.into_inner().assignment.expect("assignment").user_id, extra);
    app.licenses()
        .assign_license(authed(assign(&w.account, &w.admin, L::LargeMeeting), &admin))
        .await
        .expect("free seat");

    // Members list their own licenses only.
    let own = licenses_of(app, &w, &w.member).await;
    assert!(own.contains(&L::LargeMeeting) && own.contains(&L::Licensed));
    let peek = app
        .licenses()
        .list_assignments(authed(
            pb::ListAssignmentsRequest {
                account_id: w.account.clone(),
                user_id: w.admin.clone(),
                ..Default::default()
            },
            &app.user_token(&w.member),
        ))
        .await
        .expect_err("someone else's");
    assert_eq!(peek.code(), Code::PermissionDenied);
}

async fn r4_r31_phone_numbers_follow_phone_licenses(app: &TestApp) {
    let w = app.seed_world().await;
    let admin = app.user_token(&w.admin);
    let number =
        |n: &str| pb::AddPhoneNumberRequest { request_id: rid(), account_id: w.account.clone(), number: n.into() };
    app.licenses().add_phone_number(authed(number("+31209990001"), &admin)).await.expect("add");
    let dup = app.licenses().add_phone_number(authed(number("+31209990001"), &admin)).await.expect_err("twice");
    assert_eq!(reason(&dup), "PHONE_NUMBER_TAKEN");
    let attach = |user: &str| pb::AttachPhoneNumberRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        number: "+31209990001".into(),
        user_id: user.into(),
    };
    let unlicensed =
        app.licenses().attach_phone_number(authed(attach(&w.member), &admin)).await.expect_err("no phone license");
    assert_eq!(reason(&unlicensed), "PHONE_LICENSE_REQUIRED");
    app.licenses().assign_license(authed(assign(&w.account, &w.member, L::Phone), &admin)).await.expect("phone seat");
    let line =
        app.licenses().attach_phone_number(authed(attach(&w.member), &admin)).await.expect("attach").into_inner();
    assert_eq!(line.user_id, w.member);
    let taken =
        app.licenses().attach_phone_number(authed(attach(&w.owner), &admin)).await.expect_err("attached elsewhere");
    assert_eq!(reason(&taken), "PHONE_NUMBER_ATTACHED");

    // Unassigning the phone license takes its numbers off the user.
    let gone = app
        .licenses()
        .unassign_license(authed(
            pb::UnassignLicenseRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                license_type: L::Phone as i32,
            },
            &admin,
        ))
        .await
        .expect("unassign")
        .into_inner();
    assert_eq!(gone.detached_phone_numbers, vec!["+31209990001".to_owned()]);

    // MovePhoneLicenses (R4): the owner's phone license and numbers move to the target together.
    let move_request = pb::MovePhoneLicensesRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        from_user_id: w.owner.clone(),
        to_user_id: w.admin.clone(),
    };
    let first =
        app.licenses().move_phone_licenses(authed(move_request.clone(), &app.identity_token())).await.expect("move");
    let replay = app.licenses().move_phone_licenses(authed(move_request, &app.identity_token())).await.expect("replay");
    assert_eq!(replay.get_ref(), first.get_ref(), "a retried move returns the first answer (R32)");
    let moved = first.into_inner().moved.expect("moved");
    assert_eq!(moved.license_types, vec![L::Phone as i32]);
    assert_eq!(moved.phone_numbers, vec![w.phone.clone()]);
    assert!(licenses_of(app, &w, &w.admin).await.contains(&L::Phone));
    assert!(!licenses_of(app, &w, &w.owner).await.contains(&L::Phone));
    assert_eq!(holder_of(app, &w, &w.phone).await, w.admin);
    assert_eq!(pool(app, &w, L::Phone).await.assigned, 1, "the seat moved; none was added");

    // R4: a target holding a phone license of its own takes nothing; the giver keeps all.
    app.licenses().assign_license(authed(assign(&w.account, &w.member, L::Phone), &admin)).await.expect("phone seat");
    let kept = app
        .licenses()
        .move_phone_licenses(authed(
            pb::MovePhoneLicensesRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                from_user_id: w.admin.clone(),
                to_user_id: w.member.clone(),
            },
            &app.identity_token(),
        ))
        .await
        .expect("move to a phone holder")
        .into_inner();
    assert_eq!(kept.moved.unwrap_or_default(), pb::LicenseSet::default(), "nothing moves");
    assert!(licenses_of(app, &w, &w.admin).await.contains(&L::Phone), "the giver keeps the license");
    assert_eq!(holder_of(app, &w, &w.phone).await, w.admin, "the number stays too");
}

/// Who holds `number`, as the account's admin lists it.
async fn holder_of(app: &TestApp, w: &World, number: &str) -> String {
    let lines = app
        .licenses()
        .list_phone_numbers(authed(
            pb::ListPhoneNumbersRequest { account_id: w.account.clone() },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("numbers")
        .into_inner();
    lines.phone_numbers.into_iter().find(|l| l.number == number).expect("the number").user_id
}

/// The batch form of the reclaim step (bulk removal): each item gets what its own
/// `ReclaimLicenses` call would get, a refused item stops nothing else, and one request id
/// has one effect whichever form carries it.
async fn r18_r32_a_reclaim_batch_answers_each_item_as_its_own_call_would(app: &TestApp) {
    let w = app.seed_world().await;
    let service = app.identity_token();
    let single = |request_id: &str, user: &str| pb::ReclaimLicensesRequest {
        request_id: request_id.into(),
        account_id: w.account.clone(),
        user_id: user.into(),
    };
    let item =
        |request_id: &str, user: &str| pb::ReclaimLicensesItem { request_id: request_id.into(), user_id: user.into() };
    let admin_held = licenses_of(app, &w, &w.admin).await;
    assert!(!admin_held.is_empty(), "the world's admin holds a license");
    let member_held = licenses_of(app, &w, &w.member).await;
    let (owner_id, admin_id, stranger_id) = (rid(), rid(), rid());
    let owner_first = app
        .licenses()
        .reclaim_licenses(authed(single(&owner_id, &w.owner), &service))
        .await
        .expect("single")
        .into_inner();
    let used = rid();
    app.licenses().reclaim_licenses(authed(single(&used, &w.second_admin), &service)).await.expect("single");

    let batch = pb::ReclaimLicensesBatchRequest {
        account_id: w.account.clone(),
        items: vec![
            item(&owner_id, &w.owner),
            item(&admin_id, &w.admin),
            item(&stranger_id, &w.solo_owner),
            item(&used, &w.member),
            item(&admin_id, &w.admin),
            item(&admin_id, &w.member),
        ],
    };
    let results = app
        .licenses()
        .reclaim_licenses_batch(authed(batch.clone(), &service))
        .await
        .expect("batch")
        .into_inner()
        .results;
    assert_eq!(results.len(), 6, "one result per item, in order");
    // A request id twice in one batch (a step run again while its first run waits): the
    // second is a retry of the first; with other input, it is refused as reused.
    assert_eq!(results[4], results[1], "a repeated item replays the first");
    assert_eq!(results[5].refused.clone().expect("reused within the batch").reason, "REQUEST_ID_REUSED");
    assert_eq!(results[0].reclaimed, owner_first.reclaimed, "a request id the single call used replays its answer");
    let admin_set = results[1].reclaimed.clone().expect("the admin's licenses were taken");
    assert_eq!(admin_set.license_types, admin_held.iter().map(|l| *l as i32).collect::<Vec<_>>());
    assert!(licenses_of(app, &w, &w.admin).await.is_empty());

    let stranger = results[2].refused.clone().expect("a user of another account is refused");
    let alone = app
        .licenses()
        .reclaim_licenses(authed(single(&rid(), &w.solo_owner), &service))
        .await
        .expect_err("refused alone too");
    assert_eq!(stranger.reason, reason(&alone), "the same refusal as the single call");
    assert_eq!(results[3].refused.clone().expect("reused id").reason, "REQUEST_ID_REUSED");
    assert_eq!(licenses_of(app, &w, &w.member).await, member_held, "the refused item touched nobody");

    // Each item's request id now answers the single call with the batch's answer, and the
    // whole batch again has no second effect.
    let admin_again =
        app.licenses().reclaim_licenses(authed(single(&admin_id, &w.admin), &service)).await.expect("replay");
    assert_eq!(admin_again.into_inner().reclaimed, Some(admin_set));
    let replayed = app.licenses().reclaim_licenses_batch(authed(batch, &service)).await.expect("again").into_inner();
    assert_eq!(replayed.results[..2], results[..2], "replayed, not reclaimed again");
    // The reclaimed item's audit record and event went out with the batch's last statement,
    // once, beside its own call's.
    for (table, kind, what) in
        [("audit_events", "action", "licenses.reclaimed"), ("events", "type", "license.reclaimed")]
    {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE account_id = $1 AND {kind} = $2 AND request_id = $3");
        for (request_id, expected) in [(&admin_id, 1), (&owner_id, 1), (&stranger_id, 0)] {
            let count: i64 = sqlx::query_scalar(&sql)
                .bind(&w.account)
                .bind(what)
                .bind(request_id)
                .fetch_one(app.db.pool())
                .await
                .expect("count");
            assert_eq!(count, expected, "{table} of {what} for {request_id}");
        }
    }
}

async fn r18_r19_r32_reclaim_holds_and_restore_gives_back_exactly(app: &TestApp) {
    let w = app.seed_world().await;
    let service = app.identity_token();
    let reclaim =
        pb::ReclaimLicensesRequest { request_id: rid(), account_id: w.account.clone(), user_id: w.owner.clone() };
    let first = app.licenses().reclaim_licenses(authed(reclaim.clone(), &service)).await.expect("reclaim").into_inner();
    let set = first.reclaimed.clone().expect("set");
    assert_eq!(set.license_types, vec![L::Licensed as i32, L::Phone as i32]);
    assert_eq!(set.phone_numbers, vec![w.phone.clone()]);
    // R32: the same request again has no second effect and returns the first answer.
    let again = app.licenses().reclaim_licenses(authed(reclaim.clone(), &service)).await.expect("replay").into_inner();
    assert_eq!(again, first);
    let other_input = pb::ReclaimLicensesRequest { user_id: w.admin.clone(), ..reclaim };
    let reused =
        app.licenses().reclaim_licenses(authed(other_input, &service)).await.expect_err("same id, other input");
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
    assert!(licenses_of(app, &w, &w.owner).await.is_empty());
    assert!(!licenses_of(app, &w, &w.admin).await.is_empty(), "the refused replay touched nobody");

    // The hold: nobody can hand the reclaimed user a license until identity restores.
    let held = app
        .licenses()
        .assign_license(authed(assign(&w.account, &w.owner, L::Licensed), &app.user_token(&w.admin)))
        .await
        .expect_err("held");
    assert_eq!(reason(&held), "USER_NOT_ACTIVE");

    // Meanwhile someone takes the freed licensed seat: restore gives back what it can.
    let extra = app.add_members(&w, 1).await.remove(0);
    app.licenses()
        .assign_license(authed(assign(&w.account, &extra, L::Licensed), &app.user_token(&w.admin)))
        .await
        .expect("take seat");
    let restore = pb::RestoreLicensesRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        user_id: w.owner.clone(),
        licenses: Some(set),
    };
    let restored =
        app.licenses().restore_licenses(authed(restore.clone(), &service)).await.expect("restore").into_inner();
    assert_eq!(restored.restored.as_ref().expect("restored").license_types, vec![L::Phone as i32]);
    assert_eq!(restored.restored.as_ref().expect("restored").phone_numbers, vec![w.phone.clone()]);
    assert_eq!(restored.not_restored.as_ref().expect("missed").license_types, vec![L::Licensed as i32]);
    let replay = app.licenses().restore_licenses(authed(restore, &service)).await.expect("replay").into_inner();
    assert_eq!(replay, restored);
    assert_eq!(licenses_of(app, &w, &w.owner).await, vec![L::Phone]);
    assert_eq!(pool(app, &w, L::Licensed).await.assigned, 3, "capacity held throughout");
    // The hold is lifted: the owner can be given licenses again.
    app.licenses().set_seats(authed(seats(&w.account, L::Webinar, 2), &app.user_token(&w.owner))).await.expect("buy");
    app.licenses()
        .assign_license(authed(assign(&w.account, &w.owner, L::Webinar), &app.user_token(&w.admin)))
        .await
        .expect("assign again");
}

fn transfer(w: &World, from: &str, to: &str, kinds: &[pb::ContentKind]) -> pb::TransferContentRequest {
    pb::TransferContentRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        from_user_id: from.into(),
        to_user_id: to.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
    }
}

async fn content_of(app: &TestApp, w: &World, user: &str) -> Vec<(pb::ContentKind, bool)> {
    let items = app
        .content()
        .list_content(authed(
            pb::ListContentRequest { account_id: w.account.clone(), owner_user_id: user.into(), ..Default::default() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("content")
        .into_inner()
        .items;
    let mut kinds: Vec<_> = items.iter().map(|i| (i.kind(), i.uses_pmi)).collect();
    kinds.sort_by_key(|(k, pmi)| (*k as i32, *pmi));
    kinds
}

/// The dry run of a removal: the preview names what the reclaim and transfer steps then do,
/// refuses as the transfer would, and changes nothing.
async fn r18_r23_a_removal_preview_tells_what_the_steps_would_do_and_changes_nothing(app: &TestApp) {
    use pb::ContentKind as K;
    let w = app.seed_world().await;
    let other = app.seed_world().await;
    let service = app.identity_token();
    let all = [K::Meeting, K::Webinar, K::Event, K::Recording];
    let preview = |to: &str, kinds: &[K]| pb::PreviewUserRemovalRequest {
        account_id: w.account.clone(),
        user_id: w.member.clone(),
        to_user_id: to.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
    };
    let content_before = content_of(app, &w, &w.member).await;
    let licenses_before = licenses_of(app, &w, &w.member).await;

    for (to, kinds) in [(&w.second_admin, &all[..]), (&other.admin, &all[..])] {
        let previewed = app.content().preview_user_removal(authed(preview(to, kinds), &service)).await;
        let done = app.content().transfer_content(authed(transfer(&w, &w.member, to, kinds), &service)).await;
        let (previewed, done) = (previewed.expect_err("refused"), done.expect_err("refused"));
        assert_eq!((reason(&previewed), product_code(&previewed)), (reason(&done), product_code(&done)));
    }
    let nothing = app.content().preview_user_removal(authed(preview("", &[]), &service)).await.expect("preview");
    let nothing = nothing.into_inner();
    let remaining = nothing.remaining.expect("remaining");
    assert_eq!(nothing.transferred.expect("transferred"), pb::ContentCounts::default());
    assert_eq!(remaining.meetings + remaining.webinars + remaining.events + remaining.recordings, 4);

    let to_admin = app.content().preview_user_removal(authed(preview(&w.admin, &all), &service)).await;
    let to_admin = to_admin.expect("preview").into_inner();
    assert_eq!(content_of(app, &w, &w.member).await, content_before, "a preview moves nothing");
    assert_eq!(licenses_of(app, &w, &w.member).await, licenses_before, "a preview takes nothing");

    let done = app.content().transfer_content(authed(transfer(&w, &w.member, &w.admin, &all), &service)).await;
    let done = done.expect("transfer").into_inner();
    assert_eq!((to_admin.transferred, to_admin.remaining), (done.moved, done.kept), "as the transfer then did");
    let reclaim =
        pb::ReclaimLicensesRequest { request_id: rid(), account_id: w.account.clone(), user_id: w.member.clone() };
    let reclaimed = app.licenses().reclaim_licenses(authed(reclaim, &service)).await.expect("reclaim").into_inner();
    assert_eq!(to_admin.licenses, reclaimed.reclaimed, "as the reclaim then took");
}

async fn r21_r23_transfer_is_all_or_nothing_and_undoable(app: &TestApp) {
    use pb::ContentKind as K;
    let w = app.seed_world().await;
    let other = app.seed_world().await;
    let service = app.identity_token();
    let all = [K::Meeting, K::Webinar, K::Event, K::Recording];
    let before = content_of(app, &w, &w.member).await;
    assert_eq!(before.len(), 4);

    // The second admin holds no seat: recordings cannot go there, so nothing moves at all.
    let refused = app
        .content()
        .transfer_content(authed(transfer(&w, &w.member, &w.second_admin, &all), &service))
        .await
        .expect_err("unlicensed");
    assert_eq!((reason(&refused), product_code(&refused)), ("TARGET_LACKS_LICENSE".into(), Some("300".into())));
    assert_eq!(content_of(app, &w, &w.member).await, before, "a failing kind leaves every kind unmoved");
    let foreign = app
        .content()
        .transfer_content(authed(transfer(&w, &w.member, &other.admin, &all), &service))
        .await
        .expect_err("other account");
    assert_eq!((reason(&foreign), product_code(&foreign)), ("TARGET_NOT_IN_ACCOUNT".into(), Some("1001".into())));

    // Webinars need a webinar seat: the admin has one (demo); give the member a webinar too.
    let owner = app.user_token(&w.owner);
    app.content()
        .register_content(authed(
            pb::RegisterContentRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                owner_user_id: w.member.clone(),
                kind: K::Webinar as i32,
                title: "Town hall".into(),
                uses_pmi: false,
            },
            &owner,
        ))
        .await
        .expect("register");
    let member_has_seat = app
        .content()
        .transfer_content(authed(transfer(&w, &w.member, &w.owner, &[K::Webinar]), &service))
        .await
        .expect_err("owner has no webinar seat");
    assert_eq!(reason(&member_has_seat), "TARGET_LACKS_LICENSE");

    let request = transfer(&w, &w.member, &w.admin, &all);
    let done =
        app.content().transfer_content(authed(request.clone(), &service)).await.expect("to the admin").into_inner();
    let moved = done.moved.expect("moved");
    assert_eq!((moved.meetings, moved.webinars, moved.events, moved.recordings), (1, 1, 1, 1));
    assert_eq!(done.kept.expect("kept").meetings, 1, "the PMI meeting stays");
    assert_eq!(content_of(app, &w, &w.member).await, vec![(K::Meeting, true)]);
    let replay = app.content().transfer_content(authed(request, &service)).await.expect("replay").into_inner();
    assert_eq!(replay.transfer_id, done.transfer_id, "one transfer, whatever the retries");

    // Compensation puts back exactly what moved.
    let undo = pb::UndoContentTransferRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        transfer_id: done.transfer_id,
    };
    let returned = app.content().undo_content_transfer(authed(undo, &service)).await.expect("undo").into_inner();
    assert_eq!(returned.returned.expect("returned").recordings, 1);
    let mut expected = before.clone();
    expected.push((K::Webinar, false));
    expected.sort_by_key(|(k, pmi)| (*k as i32, *pmi));
    assert_eq!(content_of(app, &w, &w.member).await, expected);
}

async fn r22_delete_removes_what_remains(app: &TestApp) {
    let w = app.seed_world().await;
    // The delete saga reclaims first; that hold is what lets the content go afterwards.
    app.licenses()
        .reclaim_licenses(authed(
            pb::ReclaimLicensesRequest { request_id: rid(), account_id: w.account.clone(), user_id: w.member.clone() },
            &app.identity_token(),
        ))
        .await
        .expect("reclaim");
    let request =
        pb::DeleteUserContentRequest { request_id: rid(), account_id: w.account.clone(), user_id: w.member.clone() };
    let deleted = app
        .content()
        .delete_user_content(authed(request.clone(), &app.identity_token()))
        .await
        .expect("delete")
        .into_inner();
    let counts = deleted.deleted.expect("counts");
    assert_eq!((counts.meetings, counts.events, counts.recordings), (2, 1, 1));
    assert!(content_of(app, &w, &w.member).await.is_empty());
    let replay =
        app.content().delete_user_content(authed(request, &app.identity_token())).await.expect("replay").into_inner();
    assert_eq!(replay.deleted.expect("counts").meetings, 2, "the replay reports the first deletion");
    assert_eq!(content_of(app, &w, &w.admin).await.len(), 1, "others keep theirs");
}

async fn r5_billing_is_the_current_owners_alone(app: &TestApp) {
    let w = app.seed_world().await;
    let overview = |token: String| {
        let account = w.account.clone();
        async move {
            app.billing()
                .get_billing_overview(authed(pb::GetBillingOverviewRequest { account_id: account }, &token))
                .await
        }
    };
    app.billing()
        .create_subscription(authed(
            pb::CreateSubscriptionRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                plan_name: "Pro annual".into(),
                price_minor: 149_900,
                currency: "EUR".into(),
                period_start_ms: support::START_MS,
                period_end_ms: support::START_MS + 365 * 86_400_000,
            },
            &app.operator_token(),
        ))
        .await
        .expect("subscribe");
    assert_eq!(overview(app.user_token(&w.owner)).await.expect("owner").into_inner().subscriptions.len(), 1);
    for user in [&w.admin, &w.member] {
        let refused = overview(app.user_token(user)).await.expect_err("not the owner");
        assert_eq!(reason(&refused), "NOT_ACCOUNT_OWNER");
    }
    let invoices = |token: String| {
        let account = w.account.clone();
        async move {
            app.billing()
                .list_invoices(authed(pb::ListInvoicesRequest { account_id: account, ..Default::default() }, &token))
                .await
        }
    };
    assert_eq!(
        invoices(app.user_token(&w.owner)).await.expect("invoices").into_inner().invoices[0].amount_minor,
        149_900
    );

    // Ownership moves in identity; billing follows on the very next call (no cache).
    app.identity_accounts()
        .transfer_ownership(authed(
            idpb::TransferOwnershipRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                new_owner_user_id: w.admin.clone(),
                confirm_phone_transfer: true,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("transfer");
    let previous = overview(app.user_token(&w.owner)).await.expect_err("previous owner");
    assert_eq!(reason(&previous), "NOT_ACCOUNT_OWNER");
    assert_eq!(reason(&invoices(app.user_token(&w.owner)).await.expect_err("previous owner")), "NOT_ACCOUNT_OWNER");
    assert!(overview(app.user_token(&w.admin)).await.is_ok(), "the new owner sees billing at once");
    assert!(invoices(app.user_token(&w.admin)).await.is_ok());

    // Support may read the overview and the refunds (R11's billing verification), never the
    // invoices; each of its reads is in the account's audit trail, and the owner's are not.
    let operator_reads = || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT principal, details FROM audit_events WHERE account_id = $1 AND action = 'billing.read_by_operator' \
             ORDER BY id",
        )
        .bind(&w.account)
        .fetch_all(app.db.pool())
        .await
        .expect("audit")
    };
    assert!(operator_reads().await.is_empty(), "the owner's reads are not recorded as support's");
    overview(app.operator_token()).await.expect("support reads the overview");
    app.billing()
        .list_refunds(authed(
            pb::ListRefundsRequest { account_id: w.account.clone(), ..Default::default() },
            &app.operator_token(),
        ))
        .await
        .expect("support reads the refunds");
    assert_eq!(reason(&invoices(app.operator_token()).await.expect_err("not invoices")), "PRINCIPAL_NOT_ALLOWED");
    let reads = operator_reads().await;
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|(who, _)| who == "operator:support"));
    assert!(reads[0].1.contains("GetBillingOverview") && reads[1].1.contains("ListRefunds"), "{reads:?}");
}

async fn r28_refund_the_unused_remainder_once(app: &TestApp) {
    let w = app.seed_world().await;
    let solo = app.user_token(&w.solo_owner);
    let sub = app
        .billing()
        .create_subscription(authed(
            pb::CreateSubscriptionRequest {
                request_id: rid(),
                account_id: w.solo_account.clone(),
                plan_name: "Pro monthly".into(),
                price_minor: 1_999,
                currency: "EUR".into(),
                period_start_ms: support::START_MS,
                period_end_ms: support::START_MS + 30 * 86_400_000,
            },
            &solo,
        ))
        .await
        .expect("owner subscribes")
        .into_inner();
    app.clock.advance_ms(15 * 86_400_000 + 500);
    let quote = app
        .billing()
        .quote_refund(authed(
            pb::QuoteRefundRequest { account_id: w.solo_account.clone(), subscription_id: sub.id.clone() },
            &solo,
        ))
        .await
        .expect("quote")
        .into_inner();
    // 15 days (and half a second, which counts as used) of 30 left: floor(1999 * 1295999 / 2592000) = 999.
    assert_eq!((quote.amount_minor, quote.unused_seconds, quote.period_seconds), (999, 1_295_999, 2_592_000));
    let refund = |request_id: String| pb::RefundSubscriptionRequest {
        request_id,
        account_id: w.solo_account.clone(),
        subscription_id: sub.id.clone(),
        ..Default::default()
    };
    let owner_refund =
        app.billing().refund_subscription(authed(refund(rid()), &solo)).await.expect_err("identity's step");
    assert_eq!(reason(&owner_refund), "PRINCIPAL_NOT_ALLOWED");
    let first_id = rid();
    let paid = app
        .billing()
        .refund_subscription(authed(refund(first_id.clone()), &app.identity_token()))
        .await
        .expect("refund")
        .into_inner();
    assert_eq!((paid.amount_minor, paid.currency.as_str()), (999, "EUR"));
    let replay = app
        .billing()
        .refund_subscription(authed(refund(first_id), &app.identity_token()))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay, paid);
    let second =
        app.billing().refund_subscription(authed(refund(rid()), &app.identity_token())).await.expect_err("twice");
    assert_eq!(reason(&second), "ALREADY_REFUNDED");
    let refunds = app
        .billing()
        .list_refunds(authed(
            pb::ListRefundsRequest { account_id: w.solo_account.clone(), ..Default::default() },
            &solo,
        ))
        .await
        .expect("refunds")
        .into_inner()
        .refunds;
    assert_eq!(refunds, vec![paid]);
    let overview = app
        .billing()
        .get_billing_overview(authed(pb::GetBillingOverviewRequest { account_id: w.solo_account.clone() }, &solo))
        .await
        .expect("overview")
        .into_inner();
    let ended = overview.subscriptions.iter().find(|s| s.id == sub.id).expect("subscription");
    assert_eq!(ended.status(), pb::SubscriptionStatus::Ended);
}

async fn r33_changes_and_refusals_are_audited(app: &TestApp) {
    let w = app.seed_world().await;
    let admin = app.user_token(&w.admin);
    let request = assign(&w.account, &w.member, L::Phone);
    let request_id = request.request_id.clone();
    app.licenses().assign_license(authed(request, &admin)).await.expect("assign");
    // The demo's owner holds the other of the two phone seats.
    app.licenses().assign_license(authed(assign(&w.account, &w.admin, L::Phone), &admin)).await.expect_err("full");
    let trail: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT principal, action, target, outcome, request_id FROM audit_events WHERE account_id = $1 ORDER BY id",
    )
    .bind(&w.account)
    .fetch_all(app.db.pool())
    .await
    .expect("audit");
    let principal = format!("user:{}", w.admin);
    assert!(
        trail.iter().any(|(who, action, target, outcome, id)| who == &principal
            && action == "license.assigned"
            && target == &format!("user:{}", w.member)
            && outcome == "ok"
            && id == &request_id),
        "the assignment is audited with who, what, outcome and request id: {trail:?}"
    );
    assert!(
        trail.iter().any(|(who, action, _, outcome, _)| who == &principal
            && action == "license.assigned"
            && outcome == "refused:SEATS_EXHAUSTED"),
        "the refusal is audited under the same action: {trail:?}"
    );
}

/// Events made side by side, while time moves, are listed strictly newest first by the time
/// they show, page after page (the trail once showed inversions of a few milliseconds).
async fn r33_the_audit_trail_lists_concurrent_events_newest_first(app: &TestApp) {
    let w = app.seed_world().await;
    let token = app.user_token(&w.member);
    let ticking = {
        let clock = app.clock.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                clock.advance_ms(1);
                tokio::time::sleep(std::time::Duration::from_micros(300)).await;
            }
        })
    };
    let registrations = (0..60).map(|n| {
        let (mut content, account, token) = (app.content(), w.account.clone(), token.clone());
        async move {
            let request = pb::RegisterContentRequest {
                request_id: rid(),
                account_id: account,
                kind: pb::ContentKind::Meeting as i32,
                title: format!("Meeting {n}"),
                ..Default::default()
            };
            content.register_content(authed(request, &token)).await.expect("register")
        }
    });
    futures_util::future::join_all(registrations).await;
    ticking.await.expect("clock");
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .licenses()
            .list_audit_events(authed(
                pb::ListAuditEventsRequest { account_id: w.account.clone(), page_size: 7, page_token },
                &app.user_token(&w.owner),
            ))
            .await
            .expect("the owner reads the trail")
            .into_inner();
        listed.extend(page.events.into_iter().map(|event| (event.at_ms, event.id)));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(listed.len() >= 60, "{}", listed.len());
    let inversions: Vec<_> = listed.windows(2).filter(|pair| pair[0].0 < pair[1].0).collect();
    assert!(inversions.is_empty(), "listed out of time order: {inversions:?}");
    let mut ids: Vec<&String> = listed.iter().map(|(_, id)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), listed.len(), "no event listed twice across pages");
}

/// The caller owns their own account but names objects of another account: each reads as
/// missing, and nothing changes there.
async fn r34_objects_of_another_account_do_not_exist_here(app: &TestApp) {
    let mine = app.seed_world().await;
    let theirs = app.seed_world().await;
    let owner = app.user_token(&mine.owner);
    let service = app.identity_token();
    let their_lines = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT number, user_id FROM phone_numbers WHERE account_id = $1 ORDER BY number",
        )
        .bind(&theirs.account)
        .fetch_all(app.db.pool())
        .await
        .expect("their numbers")
    };
    let before = their_lines().await;

    let detach = app
        .licenses()
        .detach_phone_number(authed(
            pb::DetachPhoneNumberRequest {
                request_id: rid(),
                account_id: mine.account.clone(),
                number: theirs.phone.clone(),
            },
            &owner,
        ))
        .await
        .expect_err("their number");
    assert_eq!((detach.code(), reason(&detach)), (Code::NotFound, "PHONE_NUMBER_NOT_FOUND".into()));
    let quote = app
        .billing()
        .quote_refund(authed(
            pb::QuoteRefundRequest { account_id: mine.account.clone(), subscription_id: theirs.subscription.clone() },
            &owner,
        ))
        .await
        .expect_err("their subscription");
    assert_eq!((quote.code(), reason(&quote)), (Code::NotFound, "SUBSCRIPTION_NOT_FOUND".into()));
    let refund = app
        .billing()
        .refund_subscription(authed(
            pb::RefundSubscriptionRequest {
                request_id: rid(),
                account_id: theirs.account.clone(),
                subscription_id: theirs.subscription.clone(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .expect_err("the solo subscription lives in the solo account, not in Acme");
    assert_eq!(reason(&refund), "SUBSCRIPTION_NOT_FOUND");
    let done = app
        .content()
        .transfer_content(authed(transfer(&theirs, &theirs.member, &theirs.admin, &[pb::ContentKind::Event]), &service))
        .await
        .expect("their transfer")
        .into_inner();
    let undo = app
        .content()
        .undo_content_transfer(authed(
            pb::UndoContentTransferRequest {
                request_id: rid(),
                account_id: mine.account.clone(),
                transfer_id: done.transfer_id,
            },
            &service,
        ))
        .await
        .expect_err("their transfer, named under my account");
    assert_eq!(reason(&undo), "TRANSFER_NOT_FOUND");
    // Reclaiming "their" owner under my account is refused: they are not a user here.
    let reclaim = app
        .licenses()
        .reclaim_licenses(authed(
            pb::ReclaimLicensesRequest {
                request_id: rid(),
                account_id: mine.account.clone(),
                user_id: theirs.owner.clone(),
            },
            &service,
        ))
        .await
        .expect_err("their owner is not a user of my account");
    assert_eq!(reason(&reclaim), "USER_NOT_FOUND");

    assert_eq!(their_lines().await, before, "nothing changed in the other account");
    assert_eq!(licenses_of(app, &theirs, &theirs.owner).await, vec![L::Licensed, L::Phone]);
    assert_eq!(content_of(app, &theirs, &theirs.admin).await.len(), 2, "their webinar and the moved event");
}
