//! The process-wide panic hook: a panic is logged (through `tracing`, like everything else)
//! with where it happened and on which thread, never with its message. A panic message may hold
//! request data (a token taken from a query string, a header value): the percent-decoding
//! panic of issue #13 echoed the raw pre-authentication token into the log.

use std::panic::PanicHookInfo;

/// Replaces the default hook (which prints the message to stderr) for the whole process.
pub fn install() {
    std::panic::set_hook(Box::new(report));
}

fn report(info: &PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "unknown".into());
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    tracing::error!(
        %location,
        thread,
        "panic (its message is not logged: it may hold request data)"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_panic_is_logged_with_its_location_and_without_its_message() {
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        super::install();
        let secret = "tok_3f9a1c_secret_from_a_query_string";
        let line = line!() + 2;
        let result = std::panic::catch_unwind(|| {
            panic!("byte index 2 is not a char boundary in `%a{secret}`");
        });
        let _ = std::panic::take_hook();
        assert!(result.is_err());
        let text = String::from_utf8(log.0.lock().expect("log buffer").clone()).expect("utf-8");
        assert!(
            text.contains(&format!("cloud/src/panic_hook.rs:{line}:")),
            "the location is logged: {text:?}"
        );
        assert!(text.contains("panic"), "{text:?}");
        assert!(
            !text.contains(secret),
            "the message is not logged: {text:?}"
        );
        assert!(!text.contains("char boundary"), "{text:?}");
    }
}
