// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    // First, before any library is initialised: may replace this process image (Linux), with
    // the light image when there is no window to show in light mode, else with the app itself
    // and the start-up environment.
    webhook_connect_app::startup_env::start_light_image();
    webhook_connect_app::startup_env::apply();
    // After light mode's restart: the previous image's WebKit helpers are ours to reap.
    #[cfg(target_os = "linux")]
    if std::env::args().any(|a| a == webhook_connect_app::relaunch::CARRIED_FLAG) {
        webhook_connect_app::relaunch::end_leftovers();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match webhook_connect_app::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webhook-connect-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
