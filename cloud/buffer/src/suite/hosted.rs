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
    assert_eq!(b.create_account(&alice).await.unwrap(), Created::Created);
    let clash = account("acc_0000000000000002", "alice", "d2");
    assert_eq!(b.create_account(&clash).await.unwrap(), Created::Taken);
    assert_eq!(
        b.account_by_key("d2").await.unwrap(),
        None,
        "nothing of a refused create"
    );
    let bob = account("acc_0000000000000003", "bob", "d3");
    assert_eq!(b.create_account(&bob).await.unwrap(), Created::Created);
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
        b.create_account(&again).await.unwrap(),
        Created::Created,
        "a deleted account's name is free again"
    );
}

pub async fn hosted_channels_are_unique_and_survive_reopen(h: &dyn Harness) {
    let b = h.open().await;
    let c1 = channel("alice.shop", "acc_1", "wh_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        b.create_hosted_channel(&c1).await.unwrap(),
        Created::Created
    );
    let same_name = channel("alice.shop", "acc_1", "wh_bbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(
        b.create_hosted_channel(&same_name).await.unwrap(),
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
        b.create_hosted_channel(&same_hook).await.unwrap(),
        Created::Taken
    );
    assert_eq!(b.hosted_channel("alice.dev").await.unwrap(), None);
    let c2 = channel("bob.dev", "acc_2", "wh_cccccccccccccccccccccccccc");
    assert_eq!(
        b.create_hosted_channel(&c2).await.unwrap(),
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
