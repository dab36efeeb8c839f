//! Embeds the web UI (`ui/dist`) and the app manifest (commands, capabilities).

use std::path::Path;

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist");
    if !dist.join("index.html").is_file() {
        // `tauri::generate_context!` needs the directory; the real UI comes from `npm run build`
        // in ui/ (scripts/test-app.sh does it). A placeholder keeps headless `cargo check` working.
        println!(
            "cargo:warning=ui/dist is missing: embedding a placeholder page (run `npm ci && npm run build` in ui/)"
        );
        let _ = std::fs::create_dir_all(&dist);
        let _ = std::fs::write(
            dist.join("index.html"),
            "<!doctype html><meta charset=utf-8><title>Webhook Connect</title>\
             <p data-testid=error>The UI was not built: run <code>npm ci &amp;&amp; npm run build</code> in ui/.</p>",
        );
    }
    println!("cargo:rerun-if-changed=../../ui/dist");
    tauri_build::build();
}
