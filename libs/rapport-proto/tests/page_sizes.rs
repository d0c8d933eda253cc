//! One rule for page sizes in every List call (AIP-158: default 100,
//! larger than 1,000 clamped, negative refused), enforced for all of them
//! by `rapport_core::pagination` and documented on each the same way.

use std::path::Path;

use prost_reflect::DescriptorPool;

const RULE: &str = "// Default 100, at most 1,000 (larger is clamped); negative is refused.";

fn protos(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            protos(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
}

#[test]
fn every_list_call_pages_and_documents_the_one_rule() {
    let pool: &DescriptorPool = rapport_proto::descriptor_pool();
    let lists: Vec<_> = pool
        .all_messages()
        .filter(|m| m.name().starts_with("List") && m.name().ends_with("Request"))
        .collect();
    assert!(lists.len() >= 10, "{lists:?}");
    for list in &lists {
        assert!(
            list.get_field_by_name("page_size").is_some()
                && list.get_field_by_name("page_token").is_some(),
            "{} pages with page_size and page_token",
            list.full_name()
        );
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files = Vec::new();
    protos(&root, &mut files);
    let mut documented = 0;
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("int32 page_size =") {
                assert_eq!(
                    lines[i - 1].trim(),
                    RULE,
                    "{}:{}: page_size documents the one rule, alone",
                    file.display(),
                    i + 1
                );
                assert!(!lines[i - 2].trim_start().starts_with("//"));
                documented += 1;
            }
        }
    }
    assert_eq!(documented, lists.len());
}
