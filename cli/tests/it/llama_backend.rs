//! The llama-server backend decision (`infra/scripts/lib/llama_backend.sh`) over the
//! machines this project has met, and the choice recorded on this one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_integration_tests::{chorus_home, repo_root};

#[test]
fn llama_backend_choice_over_recorded_cpus() {
    let script = repo_root().join("infra/scripts/lib/llama_backend_test.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "wrong backend choice:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "every recorded case ran"
    );
}

/// The install recorded which backend runs here and why; a slow fallback is named, not hidden.
#[test]
fn llama_backend_on_this_machine_is_recorded_with_its_reason() {
    let env = std::fs::read_to_string(chorus_home().join("llama.env")).unwrap();
    let kind = env
        .lines()
        .find_map(|l| l.strip_prefix("LLAMA_KIND="))
        .unwrap();
    assert!(
        ["wheel-cpu", "source", "wheel-vulkan"].contains(&kind),
        "unknown backend {kind}"
    );
    let why = env
        .lines()
        .find_map(|l| l.strip_prefix("LLAMA_WHY="))
        .unwrap();
    assert!(!why.is_empty());
    println!("llama backend here: {kind} ({why})");
}
