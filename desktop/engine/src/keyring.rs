//! Tokens in the OS keyring (CONFIG.md §8.2): service `webhook-connect`, accounts
//! `channel:<origin>/<channel>` and `admin:<origin>`, and a self-service API key as
//! `api-key:<cloud url>` (HOSTED.md §4). Shared by the CLI (`token_ref = "keyring"`, `login`)
//! and the desktop app.

/// The keyring service name.
pub const SERVICE: &str = "webhook-connect";

/// Why a token could not be named, read or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The cloud URL gives no origin to name the account after.
    #[error("{0}")]
    CloudUrl(String),
    #[error("no such entry in the OS keyring")]
    NoEntry,
    /// The platform's keyring failed (locked, absent, refused).
    #[error("keyring: {0}")]
    Platform(#[source] keyring::Error),
}

/// `scheme://host[:port]` of a cloud URL: lower-cased, default ports omitted, no path.
pub fn origin(cloud_url: &str) -> Result<String, KeyringError> {
    let u = reqwest::Url::parse(cloud_url.trim())
        .map_err(|e| KeyringError::CloudUrl(format!("cloud_url: {e}")))?;
    let scheme = u.scheme().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(KeyringError::CloudUrl(format!(
            "cloud_url must be http(s), got {scheme}"
        )));
    }
    let host = u
        .host_str()
        .ok_or_else(|| KeyringError::CloudUrl("cloud_url has no host".to_owned()))?
        .to_ascii_lowercase();
    // `Url::port` is already `None` for the scheme's default port.
    Ok(match u.port() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The account of a channel token.
pub fn channel_account(cloud_url: &str, channel: &str) -> Result<String, KeyringError> {
    Ok(format!("channel:{}/{channel}", origin(cloud_url)?))
}

/// The account of an admin token.
pub fn admin_account(cloud_url: &str) -> Result<String, KeyringError> {
    Ok(format!("admin:{}", origin(cloud_url)?))
}

/// The account of a cloud's self-service API key: `api-key:` and the cloud URL as
/// [`normalize_cloud_url`](crate::hosted::normalize_cloud_url) writes it (lower-case host,
/// default port omitted, base path kept, no trailing `/`).
pub fn api_key_account(cloud_url: &str) -> Result<String, KeyringError> {
    crate::hosted::normalize_cloud_url(cloud_url)
        .map(|u| format!("api-key:{u}"))
        .map_err(|e| KeyringError::CloudUrl(e.to_string()))
}

fn entry(account: &str) -> Result<keyring::Entry, KeyringError> {
    keyring::Entry::new(SERVICE, account).map_err(KeyringError::Platform)
}

/// Runs a blocking keyring call off the async runtime when called from inside one.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => std::thread::scope(|s| s.spawn(f).join())
            .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(_) => f(),
    }
}

/// Reads a secret.
pub fn read(account: &str) -> Result<String, KeyringError> {
    off_runtime(|| {
        entry(account)?.get_password().map_err(|e| match e {
            keyring::Error::NoEntry => KeyringError::NoEntry,
            e => KeyringError::Platform(e),
        })
    })
}

/// Stores (or replaces) a secret.
pub fn write(account: &str, secret: &str) -> Result<(), KeyringError> {
    off_runtime(|| {
        entry(account)?
            .set_password(secret)
            .map_err(KeyringError::Platform)
    })
}

/// Removes a secret; a missing one is not an error.
pub fn delete(account: &str) -> Result<(), KeyringError> {
    off_runtime(|| match entry(account)?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(KeyringError::Platform(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_spec() {
        assert_eq!(
            origin("https://Relay.Example.com:443/base/").expect("origin"),
            "https://relay.example.com"
        );
        assert_eq!(origin("http://h:80").expect("origin"), "http://h");
        assert_eq!(origin("http://h:8080/x").expect("origin"), "http://h:8080");
        assert_eq!(
            channel_account("https://relay.example.com/", "team-alpha").expect("account"),
            "channel:https://relay.example.com/team-alpha"
        );
        assert_eq!(
            admin_account("https://relay.example.com").expect("account"),
            "admin:https://relay.example.com"
        );
        assert_eq!(
            api_key_account("https://Hooks.Example.com:443/").expect("account"),
            "api-key:https://hooks.example.com"
        );
        assert_eq!(
            api_key_account("http://h:8000/base/").expect("account"),
            "api-key:http://h:8000/base"
        );
        assert!(origin("ftp://h").is_err());
        assert!(origin("not a url").is_err());
    }
}
