//! `hosted::HostedClient` against the real cloud binary in `open` self-service mode: every call
//! the CLI and the app make, and the typed errors they tell apart (401 → `Unauthorized`, the
//! body's `code` and `detail` for 403 / 404 / 409 / 422, a dead port → `Network`).

use connect_engine::hosted::{HostedClient, HostedError};
use connect_protocol::error::ErrorCode;
use connect_protocol::hosted::{CreateChannelRequest, SignUpRequest, UpdateChannelRequest};
use connect_testkit::{Cloud, free_port};
use serde_json::json;

fn client(cloud: &Cloud, key: Option<&str>) -> HostedClient {
    HostedClient::new(&cloud.base, key, &Default::default()).unwrap()
}

#[tokio::test]
async fn the_client_covers_the_api_and_tells_its_errors_apart() {
    let cloud = Cloud::builder(json!({}))
        .self_service("open")
        .start()
        .await
        .unwrap();
    let (_, key) = cloud
        .create_account("hana", json!({"max_channels": 1}))
        .await
        .unwrap();
    let c = client(&cloud, Some(&key));

    let account = c.account().await.unwrap();
    assert_eq!(account.name, "hana");
    assert_eq!(account.quota.max_channels, 1);

    let created = c
        .create_channel(&CreateChannelRequest {
            name: "dev".into(),
            description: Some("laptop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.channel, "hana.dev");
    assert!(
        created
            .webhook_url
            .starts_with(&format!("{}/webhook/wh_", cloud.base))
    );
    let list = c.channels().await.unwrap();
    assert_eq!(list.channels.len(), 1);
    assert_eq!(list.channels[0].webhook_url, created.webhook_url);
    let detail = c.channel("hana.dev").await.unwrap();
    assert_eq!(detail.channel.description.as_deref(), Some("laptop"));

    // 403 quota_exceeded, with the cloud's detail.
    let e = c
        .create_channel(&CreateChannelRequest {
            name: "two".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e:?}");
    assert_eq!(e.status(), Some(403));
    // 422 naming the cap.
    let e = c
        .update_channel(
            "hana.dev",
            &UpdateChannelRequest {
                ttl_seconds: Some(account.quota.max_ttl_seconds + 1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(422), "{e:?}");
    assert!(e.to_string().contains("ttl_seconds"), "{e}");
    let updated = c
        .update_channel(
            "hana.dev",
            &UpdateChannelRequest {
                ttl_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.settings.ttl_seconds, 60);

    // Queue, dead letters and rotation on an owned channel; 404 for anything else.
    let r = cloud
        .http
        .post(&created.webhook_url)
        .body("{\"n\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let queued = c.messages("hana.dev", 10, "all").await.unwrap();
    assert_eq!(queued.count, 1);
    let dl = c.dead_letters("hana.dev", 10, true).await.unwrap();
    assert_eq!(dl.total, 0);
    let e = c.dead_letter("hana.dev", "msg_nope").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let all = c.replay_all_dead_letters("hana.dev", None).await.unwrap();
    assert_eq!(all.replayed, 0);
    let purged = c.purge_dead_letters("hana.dev").await.unwrap();
    assert_eq!(purged.deleted, 0);
    let rotated = c.rotate_token("hana.dev", Some(0)).await.unwrap();
    assert!(rotated.new_token.starts_with("ch_tok_"));
    for missing in ["hana.nope", "other.dev"] {
        let e = c.channel(missing).await.unwrap_err();
        assert!(e.is_not_found(), "{missing}: {e:?}");
        let e = c.dead_letters(missing, 10, false).await.unwrap_err();
        assert!(e.is_not_found(), "{missing}: {e:?}");
    }

    // Open sign-up without a key; the new key works at once.
    let anon = client(&cloud, None);
    assert!(matches!(anon.account().await, Err(HostedError::NoKey)));
    let signed = anon
        .sign_up(&SignUpRequest {
            name: Some("ivan".into()),
        })
        .await
        .unwrap();
    let ivan = anon.with_key(&signed.api_key).unwrap();
    assert_eq!(ivan.account().await.unwrap().name, "ivan");
    // Another account's channel is missing, not forbidden.
    assert!(ivan.channel("hana.dev").await.unwrap_err().is_not_found());
    let e = anon
        .sign_up(&SignUpRequest {
            name: Some("ivan".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NameTaken), "{e:?}");

    // 401 for a wrong key, whatever the path.
    let wrong = client(&cloud, Some("whc_wrong"));
    for e in [
        wrong.account().await.unwrap_err(),
        wrong.channel("hana.dev").await.unwrap_err(),
    ] {
        assert!(matches!(e, HostedError::Unauthorized { .. }), "{e:?}");
        assert_eq!(e.kind(), "unauthorized");
    }

    let deleted = c.delete_channel("hana.dev").await.unwrap();
    assert_eq!(deleted.deleted, "hana.dev");
    assert_eq!(deleted.messages_discarded, 1);
    assert!(
        c.delete_channel("hana.dev")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Nobody listening: a network error, not an API answer.
    let dead = HostedClient::new(
        &format!("http://127.0.0.1:{}", free_port()),
        Some(&key),
        &Default::default(),
    )
    .unwrap();
    let e = dead.account().await.unwrap_err();
    assert!(matches!(e, HostedError::Network(_)), "{e:?}");
    assert_eq!(e.status(), None);
}
