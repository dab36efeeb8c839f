//! Suite cases for the self-service records (accounts, key digests, account-owned channels).

use connect_protocol::hosted::{Quota, VerifyPreset, VerifySpec};
use connect_protocol::time::Timestamp;

use super::{Harness, reopen};
use crate::hosted::{AccountRecord, Created, HostedChannelRecord};

fn quota() -> Quota {
    Quota {
        max_channels: 3,
        max_queue_size: 100,
        max_body_bytes: 1024,
        ingress_per_second: 5,
        max_ttl_seconds: 3600,
    }
}

fn account(id: &str, name: &str, digest: &str) -> AccountRecord {
    AccountRecord {
        account_id: id.into(),
        name: name.into(),
        created_at: Timestamp::from_micros(1_000_000),
        disabled: false,
        quota: quota(),
        key_digest: digest.into(),
    }
}

fn channel(name: &str, account: &str, webhook: &str) -> HostedChannelRecord {
    HostedChannelRecord {
        channel: name.into(),
        account_id: account.into(),
        webhook_id: webhook.into(),
        created_at: Timestamp::from_micros(2_000_000),
        updated_at: Timestamp::from_micros(2_000_000),
        description: Some("shop".into()),
        verify: Some(VerifySpec {
            preset: VerifyPreset::Github,
            secret: "s3cret".into(),
            header: None,
        }),
        ttl_seconds: 60,
        max_queue_size: 10,
        max_delivery_attempts: 3,
    }
}

pub async fn accounts_are_unique_and_found_by_key_digest(h: &dyn Harness) {
    let b = h.open().await;
    let alice = account("acc_0000000000000001", "alice", "d1");
    assert_eq!(
        b.create_account(&alice, 10).await.unwrap(),
        Created::Created
    );
    let clash = account("acc_0000000000000002", "alice", "d2");
    assert_eq!(b.create_account(&clash, 10).await.unwrap(), Created::Taken);
    assert_eq!(
        b.account_by_key("d2").await.unwrap(),
        None,
        "nothing of a refused create"
    );
    let bob = account("acc_0000000000000003", "bob", "d3");
    assert_eq!(b.create_account(&bob, 10).await.unwrap(), Created::Created);
    assert_eq!(b.account_count().await.unwrap(), 2);
    assert_eq!(b.account_by_key("d1").await.unwrap(), Some(alice.clone()));
    assert_eq!(
        b.account("acc_0000000000000003").await.unwrap(),
        Some(bob.clone())
    );

    // Rotation: the old digest stops finding the account at once.
    let rotated = AccountRecord {
        key_digest: "d1b".into(),
        disabled: true,
        ..alice.clone()
    };
    assert!(b.put_account(&rotated).await.unwrap());
    assert_eq!(b.account_by_key("d1").await.unwrap(), None);
    assert_eq!(
        b.account_by_key("d1b").await.unwrap(),
        Some(rotated.clone())
    );
    assert!(
        !b.put_account(&account("acc_ffffffffffffffff", "eve", "x"))
            .await
            .unwrap()
    );

    let b = reopen(h, b).await;
    assert_eq!(
        b.accounts().await.unwrap(),
        vec![rotated.clone(), bob.clone()],
        "accounts survive a restart, ordered by id"
    );
    assert_eq!(b.account_by_key("d1b").await.unwrap(), Some(rotated));

    assert!(b.delete_account("acc_0000000000000001").await.unwrap());
    assert!(!b.delete_account("acc_0000000000000001").await.unwrap());
    assert_eq!(b.account_by_key("d1b").await.unwrap(), None);
    assert_eq!(b.account_count().await.unwrap(), 1);
    let again = account("acc_0000000000000004", "alice", "d4");
    assert_eq!(
        b.create_account(&again, 10).await.unwrap(),
        Created::Created,
        "a deleted account's name is free again"
    );
}

pub async fn hosted_channels_are_unique_and_survive_reopen(h: &dyn Harness) {
    let b = h.open().await;
    let c1 = channel("alice.shop", "acc_1", "wh_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        b.create_hosted_channel(&c1, 10).await.unwrap(),
        Created::Created
    );
    let same_name = channel("alice.shop", "acc_1", "wh_bbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(
        b.create_hosted_channel(&same_name, 10).await.unwrap(),
        Created::Taken
    );
    assert_eq!(
        b.hosted_channel_by_webhook("wh_bbbbbbbbbbbbbbbbbbbbbbbbbb")
            .await
            .unwrap(),
        None,
        "a refused create claims nothing"
    );
    let same_hook = channel("alice.dev", "acc_1", "wh_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        b.create_hosted_channel(&same_hook, 10).await.unwrap(),
        Created::Taken
    );
    assert_eq!(b.hosted_channel("alice.dev").await.unwrap(), None);
    let c2 = channel("bob.dev", "acc_2", "wh_cccccccccccccccccccccccccc");
    assert_eq!(
        b.create_hosted_channel(&c2, 10).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        b.hosted_channel_by_webhook("wh_aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .await
            .unwrap(),
        Some(c1.clone())
    );
    assert_eq!(b.account_channels("acc_1").await.unwrap(), vec![c1.clone()]);
    assert_eq!(b.hosted_channel_count().await.unwrap(), 2);
    assert_eq!(
        b.hosted_channel_names().await.unwrap(),
        vec!["alice.shop".to_owned(), "bob.dev".to_owned()]
    );

    let patched = HostedChannelRecord {
        verify: None,
        ttl_seconds: 120,
        ..c1.clone()
    };
    assert!(b.put_hosted_channel(&patched).await.unwrap());
    assert!(
        !b.put_hosted_channel(&channel("x.y", "acc_1", "wh_d"))
            .await
            .unwrap()
    );

    let b = reopen(h, b).await;
    assert_eq!(
        b.hosted_channels().await.unwrap(),
        vec![patched.clone(), c2.clone()]
    );
    assert_eq!(b.hosted_channel("alice.shop").await.unwrap(), Some(patched));

    assert!(b.delete_hosted_channel("alice.shop").await.unwrap());
    assert!(!b.delete_hosted_channel("alice.shop").await.unwrap());
    assert_eq!(
        b.hosted_channel_by_webhook("wh_aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .await
            .unwrap(),
        None
    );
    assert!(b.account_channels("acc_1").await.unwrap().is_empty());
    assert_eq!(b.hosted_channels().await.unwrap(), vec![c2]);
}

/// `max_accounts` and an account's `max_channels` hold under concurrent creates (each create
/// checks and counts in one atomic step); a refused create leaves nothing behind, a deleted
/// channel frees its place.
pub async fn caps_hold_under_concurrent_creates(h: &dyn Harness) {
    let b = h.open().await;
    let creates = (0..30).map(|i| {
        let b = b.clone();
        tokio::spawn(async move {
            let a = account(
                &format!("acc_{i:016x}"),
                &format!("user{i}"),
                &format!("k{i}"),
            );
            b.create_account(&a, 5).await.unwrap()
        })
    });
    let outcomes: Vec<Created> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let made = outcomes.iter().filter(|o| **o == Created::Created).count();
    assert_eq!(made, 5, "max_accounts 5: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Created::Created | Created::Full))
    );
    assert_eq!(b.account_count().await.unwrap(), 5);
    assert_eq!(b.accounts().await.unwrap().len(), 5);

    let creates = (0..30).map(|i| {
        let b = b.clone();
        tokio::spawn(async move {
            let c = channel(&format!("racer.c{i}"), "acc_racer", &format!("wh_{i:026}"));
            b.create_hosted_channel(&c, 5).await.unwrap()
        })
    });
    let outcomes: Vec<Created> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let made = outcomes.iter().filter(|o| **o == Created::Created).count();
    assert_eq!(made, 5, "max_channels 5: {outcomes:?}");
    let owned = b.account_channels("acc_racer").await.unwrap();
    assert_eq!(owned.len(), 5);
    assert_eq!(b.hosted_channel_count().await.unwrap(), 5);
    // Another account has its own count.
    let other = channel("other.a", "acc_other", "wh_otherotherotherotherother");
    assert_eq!(
        b.create_hosted_channel(&other, 1).await.unwrap(),
        Created::Created
    );
    // A refused create (full) claimed nothing; deleting frees a place.
    let late = channel("racer.late", "acc_racer", "wh_latelatelatelatelatelatel");
    assert_eq!(
        b.create_hosted_channel(&late, 5).await.unwrap(),
        Created::Full
    );
    assert_eq!(
        b.hosted_channel_by_webhook("wh_latelatelatelatelatelatel")
            .await
            .unwrap(),
        None
    );
    assert!(b.delete_hosted_channel(&owned[0].channel).await.unwrap());
    assert_eq!(
        b.create_hosted_channel(&late, 5).await.unwrap(),
        Created::Created
    );
    // The same name twice at once: one is created, the other finds it taken, and the count
    // is not inflated by it.
    assert!(b.delete_hosted_channel("racer.late").await.unwrap());
    let twins = (0..2).map(|i| {
        let b = b.clone();
        tokio::spawn(async move {
            let c = channel("racer.twin", "acc_racer", &format!("wh_twin{i:021}"));
            b.create_hosted_channel(&c, 5).await.unwrap()
        })
    });
    let mut twins: Vec<Created> = futures::future::join_all(twins)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    twins.sort_by_key(|o| *o == Created::Taken);
    assert_eq!(twins, vec![Created::Created, Created::Taken]);
    assert_eq!(b.account_channels("acc_racer").await.unwrap().len(), 5);
    let reopened = reopen(h, b).await;
    assert_eq!(
        reopened
            .create_hosted_channel(
                &channel("racer.more", "acc_racer", "wh_moremoremoremoremoremorem"),
                5
            )
            .await
            .unwrap(),
        Created::Full,
        "the count survives a restart"
    );
}
