//! The crate's modules are layered: `lib.rs` declares them from the bottom up, and a module may use only the
//! modules declared before it. This test reads the sources and holds the crate to that, so a module that
//! reaches upwards (and with it an import cycle) fails CI rather than a review.

use std::path::Path;

/// The modules in the order `lib.rs` declares them.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_owned())
        })
        .collect()
}

/// The crate modules a source file refers to in code (`crate::name`), comments and doc links left out.
fn used_modules(source: &str, modules: &[String]) -> Vec<String> {
    let mut used = Vec::new();
    for line in source.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if modules.contains(&name) && !used.contains(&name) {
                used.push(name);
            }
        }
    }
    used
}

#[test]
fn no_module_uses_one_declared_after_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules = declared_modules(&lib);
    assert!(modules.len() > 10, "lib.rs declares its modules: {modules:?}");
    let mut violations = Vec::new();
    for (rank, module) in modules.iter().enumerate() {
        let source = std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap();
        for used in used_modules(&source, &modules) {
            let used_rank = modules.iter().position(|m| *m == used).unwrap();
            if used_rank >= rank && used != *module {
                violations.push(format!("{module} uses {used}, declared after it"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_checker_sees_upward_uses() {
    let modules: Vec<String> = ["low", "high"].map(String::from).to_vec();
    assert_eq!(used_modules("use crate::high::Thing;\n// crate::low in a comment", &modules), ["high"]);
    assert_eq!(declared_modules("mod low;\npub mod high;\npub use low::X;"), modules);
}
