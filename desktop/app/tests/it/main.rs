//! Integration tests of the app without Tauri: the tray menu's items dispatched against a real
//! engine (`Core`) connected to a real `webhook-connect-cloud` child process, with a recording
//! target; self-service (accounts, channels created through `/api/v1`) against a cloud in `keys`
//! mode. (The menu cannot be clicked headless: no tray host. The window is covered by the
//! `webdriver` test.)

mod harness;
mod self_service;
mod tray_menu;
mod ui_bridge;
mod ui_real;
