//! The generated SDKs, used as a client team uses them: their own test
//! suites run against this suite's gateway on loopback. `make sdk`
//! (which `make test` runs first) generates them and installs their
//! tools into .tools/.

use std::path::{Path, PathBuf};

use rapport_e2e::{OPERATOR_KEY, Suite};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn the_python_sdk_scenario_passes_against_the_gateway() {
    let python = root().join(".tools/python/bin/python");
    assert!(
        python.exists() && root().join("sdk/python/src/rapport/contacts").exists(),
        "the Python SDK is not generated: run `make sdk` (make test does)"
    );
    let suite = Suite::start().await;
    let output = tokio::process::Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "sdk/python/tests",
        ])
        .current_dir(root())
        .env("PYTHONPATH", root().join("sdk/python/src"))
        .env("RAPPORT_ENDPOINT", suite.gateway.addr.to_string())
        .env("RAPPORT_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .await
        .expect("pytest runs");
    passed(&output);
}

#[tokio::test]
async fn the_typescript_sdk_scenario_passes_against_the_gateway() {
    let sdk = root().join("sdk/typescript");
    assert!(
        sdk.join("src/gen/rapport/contacts").exists() && sdk.join("node_modules").exists(),
        "the TypeScript SDK is not generated: run `make sdk` (make test does)"
    );
    let suite = Suite::start().await;
    let output = tokio::process::Command::new("node")
        .args(["--test", "test/"])
        .current_dir(sdk)
        .env("RAPPORT_ENDPOINT", suite.gateway.addr.to_string())
        .env("RAPPORT_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .await
        .expect("node runs");
    passed(&output);
}

fn passed(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
