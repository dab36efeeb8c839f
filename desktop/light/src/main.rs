//! `webhook-connect-light`: the desktop app's light image (Linux). Light mode hands over to it
//! once the window is closed (`connect_appcore::relaunch`): tray, engine and notifications over
//! GTK, without WebKit, so the app stays small while it forwards. Asked for the window (tray
//! menu, or the app launched again), it hands back to `webhook-connect-app`. Not meant to be
//! started by hand: the app starts it with `--app <path of the app> [--carried]`.

#[cfg(target_os = "linux")]
mod light;

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    {
        // Handed over from the app: its WebKit helpers are still children of this pid.
        connect_appcore::init_image();
        match light::run() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("webhook-connect-light: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("webhook-connect-light runs on Linux only: start webhook-connect-app");
        std::process::ExitCode::from(2)
    }
}
