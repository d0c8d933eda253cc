//! README's table of error reasons lists every value of every package's
//! `ErrorReason` enum with the gRPC code its comment names, and nothing else.

use std::collections::BTreeSet;
use std::path::Path;

use prost_reflect::DescriptorPool;

/// (package, code, reason) of every documented reason in `errors.proto`
/// files: the code is the first word of the value's comment.
fn from_protos(root: &Path) -> BTreeSet<(String, String, String)> {
    let pool: &DescriptorPool = rapport_proto::descriptor_pool();
    let mut reasons = BTreeSet::new();
    for reason in pool.all_enums().filter(|e| e.name() == "ErrorReason") {
        let package = reason.package_name();
        let short = package
            .strip_prefix("rapport.")
            .and_then(|p| p.strip_suffix(".v1"))
            .expect("a rapport.<package>.v1 package");
        let source =
            std::fs::read_to_string(root.join(package.replace('.', "/")).join("errors.proto"))
                .expect("each ErrorReason lives in its package's errors.proto");
        for value in reason.values().filter(|v| v.number() != 0) {
            let declaration = format!("  {} = {};", value.name(), value.number());
            let before = &source[..source.find(&declaration).expect("declared")];
            let comment: Vec<&str> = before
                .lines()
                .rev()
                .take_while(|line| line.trim_start().starts_with("//"))
                .collect();
            let first_line = comment.last().expect("every reason is documented");
            let code = first_line
                .trim_start()
                .trim_start_matches("//")
                .trim()
                .split('.')
                .next()
                .unwrap_or_default();
            reasons.insert((short.to_owned(), code.to_owned(), value.name().to_owned()));
        }
    }
    reasons
}

/// (package, code, reason) of every row of README's table.
fn from_readme(readme: &str) -> BTreeSet<(String, String, String)> {
    let table = &readme[readme
        .find("## Error reasons")
        .expect("README has the table")..];
    table
        .lines()
        .filter(|line| line.starts_with("| ") && line.contains('`'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[3].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

#[test]
fn readme_lists_every_error_reason_with_its_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let protos = from_protos(&root.join("proto"));
    assert!(protos.len() > 20, "{protos:?}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let listed = from_readme(&readme);
    let missing: Vec<_> = protos.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&protos).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README's error table is out of step with errors.proto: missing {missing:?}, not in the protos {extra:?}"
    );
}
