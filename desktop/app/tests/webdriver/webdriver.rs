//! A minimal W3C WebDriver client over reqwest: what the end-to-end test needs, nothing more.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Clone, Debug)]
pub struct By(String);

impl By {
    pub fn css(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn testid(id: &str) -> Self {
        Self(format!("[data-testid='{id}']"))
    }
}

pub struct Element(String);

pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// Creates a session that launches the app binary.
    pub async fn start(driver: &str, app: &Path) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": app.display().to_string()}
        }}});
        let v: Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let id = v["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {v}"))?;
        Ok(Self {
            http,
            base: format!("{driver}/session/{id}"),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut rq = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("WebDriver {path}: {status}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn find(&self, by: By) -> Result<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": by.0})),
            )
            .await?;
        Ok(Element(
            v[ELEMENT].as_str().context("element id")?.to_owned(),
        ))
    }

    pub async fn wait_for(&self, by: By, timeout: Duration) -> Result<Element> {
        let end = Instant::now() + timeout;
        loop {
            match self.find(by.clone()).await {
                Ok(e) => return Ok(e),
                Err(e) if Instant::now() >= end => {
                    return Err(e.context(format!("waiting for {}", by.0)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn text(&self, e: &Element) -> Result<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", e.0),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the element's text contains `needle`.
    pub async fn wait_text(&self, by: By, needle: &str, timeout: Duration) -> Result<String> {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < end {
            if let Ok(e) = self.find(by.clone()).await {
                last = self.text(&e).await.unwrap_or_default();
                if last.contains(needle) {
                    return Ok(last);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("{} never contained {needle:?} (last: {last:?})", by.0)
    }

    pub async fn attribute(&self, e: &Element, name: &str) -> Result<String> {
        self.element_string(e, "attribute", name).await
    }

    /// Clicks once the element exists and is interactable (retried: views animate in).
    pub async fn click(&self, by: By) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.wait_for(by.clone(), Duration::from_secs(10)).await?;
            match self
                .call(
                    reqwest::Method::POST,
                    &format!("/element/{}/click", e.0),
                    Some(json!({})),
                )
                .await
            {
                Ok(_) => return Ok(()),
                // WebKitWebDriver refuses some table rows as "not interactable" although they
                // are visible: fall back to a DOM click, which is what the user's click does.
                Err(err) if err.to_string().contains("not interactable") => {
                    self.call(
                        reqwest::Method::POST,
                        "/execute/sync",
                        Some(json!({"script": "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
                                    "args": [{ELEMENT: e.0}]})),
                    )
                    .await
                    .with_context(|| format!("DOM click on {}", by.0))?;
                    return Ok(());
                }
                Err(err) if Instant::now() >= end => {
                    return Err(err.context(format!("clicking {}", by.0)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Replaces what the input `by` holds with `text`, and checks that it holds exactly that.
    ///
    /// The UI's inputs are controlled: WebDriver's clear empties the DOM field without telling
    /// the view, so a re-render before the keys arrive puts the old value back and the keys
    /// land after it. That failed the self-service flow once in twenty runs here, and once in
    /// CI: the API key typed after a refused one was sent as both, and refused again. So the
    /// field is typed again until it holds exactly `text`.
    pub async fn type_into(&self, by: By, text: &str) -> Result<()> {
        let mut held = String::new();
        for _ in 0..5 {
            let e = self.wait_for(by.clone(), Duration::from_secs(10)).await?;
            self.call(
                reqwest::Method::POST,
                &format!("/element/{}/clear", e.0),
                Some(json!({})),
            )
            .await?;
            self.call(
                reqwest::Method::POST,
                &format!("/element/{}/value", e.0),
                Some(json!({"text": text})),
            )
            .await?;
            held = self.property(&e, "value").await?;
            if held == text {
                return Ok(());
            }
            eprintln!(
                "{} held {} characters after typing {}: typing again",
                by.0,
                held.chars().count(),
                text.chars().count()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{} holds {} characters, not the {} typed (five tries)",
            by.0,
            held.chars().count(),
            text.chars().count()
        )
    }

    /// The DOM property `name` of `e` (an input's `value` is a property, not an attribute).
    pub async fn property(&self, e: &Element, name: &str) -> Result<String> {
        self.element_string(e, "property", name).await
    }

    /// An element's `attribute` or `property` `name` as a string (empty when it has none).
    async fn element_string(&self, e: &Element, kind: &str, name: &str) -> Result<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/{kind}/{name}", e.0),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs `script` (a function body whose last argument is the callback) in the page and
    /// returns the value it calls back with.
    pub async fn execute_async(&self, script: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Calls a Tauri command from the page, as the UI does.
    pub async fn invoke(&self, cmd: &str, args: Value) -> Result<Value> {
        let script = "const [cmd, args, done] = arguments; \
            window.__TAURI_INTERNALS__.invoke(cmd, args) \
              .then((v) => done({ok: v === undefined ? null : v}), (e) => done({err: String(e)}));";
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": script, "args": [cmd, args]})),
            )
            .await?;
        if let Some(e) = v.get("err") {
            bail!("{cmd}: {e}");
        }
        Ok(v["ok"].clone())
    }

    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot data")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    pub async fn end(&self) -> Result<()> {
        self.call(reqwest::Method::DELETE, "", None).await?;
        Ok(())
    }
}
