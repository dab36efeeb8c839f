// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    // First, before any library is initialised: may replace this process image (Linux), with
    // the light image when there is no window to show in light mode, else with the app itself
    // and the start-up environment.
    webhook_connect_app::startup_env::start_light_image();
    webhook_connect_app::startup_env::apply();
    connect_appcore::init_image();
    match webhook_connect_app::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webhook-connect-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
