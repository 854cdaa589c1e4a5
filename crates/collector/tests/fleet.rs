//! `GET /v1/devices`: the fleet, the longest silent first, so a device that
//! stopped shipping (uninstalled, wiped) is visible; with open gaps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{Env, encode, get};
use sessiontrail_collector::store::Role;

#[tokio::test]
async fn the_fleet_view_lists_silent_devices_first_with_their_gaps() {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let mut busy = env.device(1).await;
    let quiet = env.device(2).await;
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    // The busy device ships seq 1–2, then 5: seq 3–4 are an open gap.
    assert_eq!(env.post_next(&mut busy, 2).await.status, StatusCode::OK);
    let mut later = busy.sign(3);
    let r = env
        .post_batch(&busy.credential, encode(&later.split_off(2)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());

    let all = env.call(get("/v1/devices", Some(&auditor))).await;
    assert_eq!(all.status, StatusCode::OK);
    let all = all.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["key"], quiet.key().to_hex());
    assert!(all[0]["last_seen_ms"].is_null());
    assert_eq!(all[0]["open_gaps"], 0);
    assert_eq!(all[1]["key"], busy.key().to_hex());
    assert_eq!(all[1]["high_water"], 5);
    assert_eq!(all[1]["open_gaps"], 1);
    assert!(all[1]["last_seen_ms"].as_i64().unwrap() > all[1]["enrolled_ms"].as_i64().unwrap());

    // Silent for a second: only the device that never shipped.
    let silent = env
        .call(get("/v1/devices?silent_for=1s", Some(&auditor)))
        .await
        .json();
    let keys: Vec<&str> = silent
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [quiet.key().to_hex()]);

    let r = env
        .call(get("/v1/devices?silent_for=soon", Some(&auditor)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_query");
    let r = env.call(get("/v1/devices", Some(&busy.credential))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env.call(get("/v1/devices", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
