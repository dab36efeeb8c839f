use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::api::Transport;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(v: Value) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("connector.json");
    std::fs::write(&p, v.to_string()).unwrap();
    (d, p)
}

fn base() -> Value {
    json!({"cloud_url": "http://file.example/", "channel": "file-ch", "token": "t",
           "protocol": "sse", "default_target": {"url": "http://localhost:1/"}})
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let (_d, p) = file(base());
    let sources = Sources {
        config_file: Some(p.clone()),
        env: env(&[
            ("CONNECTOR_PROTOCOL", "long_poll"),
            ("CONNECTOR_CHANNEL", "env-ch"),
        ]),
        flags: Overrides {
            channel: Some("flag-ch".into()),
            ..Default::default()
        },
    };
    let c = load(&sources).unwrap();
    let ch = &c.channels[0];
    assert_eq!(ch.channel, "flag-ch");
    assert_eq!(ch.protocol, TransportChoice::Only(Transport::LongPoll));
    assert_eq!(ch.cloud_url, "http://file.example");
    assert_eq!(ch.heartbeat_timeout, Duration::from_secs(60));
    assert_eq!(c.log_level, "INFO");

    // A flag that was not given does not override: the file's protocol stays.
    let c = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.channels[0].protocol,
        TransportChoice::Only(Transport::Sse)
    );
}

#[test]
fn config_file_can_come_from_env_and_empty_env_is_unset() {
    let (_d, p) = file(base());
    let c = load(&Sources {
        env: env(&[
            ("CONNECTOR_CONFIG_FILE", p.to_str().unwrap()),
            ("CONNECTOR_CHANNEL", ""),
            ("CONNECTOR_VERIFY_SSL", "off"),
        ]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.channels[0].channel, "file-ch");
    assert!(!c.channels[0].verify_ssl);
}

#[test]
fn unknown_keys_warn() {
    let mut v = base();
    v["surprise"] = json!(1);
    v["default_target"]["weird"] = json!(true);
    let (_d, p) = file(v);
    let c = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn etcd_module_mode_takes_host_port_prefix_and_namespace() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("default_target");
    v["etcd_host"] = json!("etcd-a, etcd-b:2380,http://etcd-c:1234");
    v["etcd_port"] = json!(2479);
    v["etcd_prefix"] = json!("/hooks");
    v["namespace"] = json!("team-a");
    let (_d, p) = file(v);
    let c = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.channels[0].module,
        Some(crate::modules::ModuleMode::Etcd(
            crate::modules::EtcdModules {
                endpoints: vec![
                    "etcd-a:2479".into(),
                    "etcd-b:2380".into(),
                    "http://etcd-c:1234".into()
                ],
                prefix: "/hooks/".into(),
                namespace: "team-a".into(),
            }
        ))
    );
}

#[test]
fn invalid_values_are_clear_errors() {
    let e = load(&Sources {
        env: env(&[("CONNECTOR_PROTOCOL", "bogus")]),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("invalid protocol"), "{e}");
    let mut v = base();
    v["etcd_host"] = json!("etcd.local");
    let (_d, p) = file(v);
    let e = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("several delivery modes"), "{e}");
    let mut v = base();
    v["etcd_host"] = json!("etcd.local");
    v["namespace"] = json!("a/b");
    v.as_object_mut().unwrap().remove("default_target");
    let (_d, p) = file(v);
    let e = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("namespace must match"), "{e}");
    let mut v = base();
    v["channels"] = json!([{"channel": "x"}]);
    let (_d, p) = file(v);
    let e = load(&Sources {
        config_file: Some(p),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("`channel` must not be set"), "{e}");
}

#[test]
fn channels_inherit_top_level_and_env() {
    let v = json!({"cloud_url": "http://c.example", "token": "t",
        "default_target": {"url": "http://localhost:2"},
        "channels": [{"channel": "a"}, {"channel": "b", "protocol": "sse", "token": "tb"},
                     {"channel": "c", "enabled": false}]});
    let (_d, p) = file(v);
    let c = load(&Sources {
        config_file: Some(p),
        env: env(&[("CONNECTOR_PROTOCOL", "long_poll")]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.channels.len(), 2);
    assert_eq!(
        c.channels[0].protocol,
        TransportChoice::Only(Transport::LongPoll)
    );
    assert_eq!(
        c.channels[1].protocol,
        TransportChoice::Only(Transport::Sse)
    );
    assert_eq!(c.channels[1].token, "tb");
    assert_eq!(c.channels[0].token, "t");
}

mod token_inheritance_tests {
    use super::*;

    #[test]
    fn a_channels_own_token_ref_beats_an_inherited_token() {
        let file = serde_json::json!({
            "cloud_url": "http://127.0.0.1:1",
            "token": "top-level-token",
            "channels": [
                {"channel": "alpha", "default_target": {"url": "http://127.0.0.1:2"}},
                {"channel": "beta", "token_ref": "env:BETA_TOKEN", "default_target": {"url": "http://127.0.0.1:3"}}
            ]
        });
        let env: BTreeMap<String, String> =
            [("BETA_TOKEN".to_owned(), "beta-token".to_owned())].into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.json");
        std::fs::write(&path, file.to_string()).unwrap();
        let cfg = load(&Sources {
            config_file: Some(path),
            env,
            flags: Overrides::default(),
        })
        .unwrap();
        let tokens: Vec<&str> = cfg.channels.iter().map(|c| c.token.as_str()).collect();
        assert_eq!(tokens, ["top-level-token", "beta-token"]);
    }
}
