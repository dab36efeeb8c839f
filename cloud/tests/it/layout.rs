//! The crate's layering, checked on its source: no module imports one that imports it back
//! (directly or through a cycle), and no file is over 700 lines. Edges are the `crate::`,
//! `super::` and `self::` paths and child-module paths of each file's code (comments and
//! inline test modules excluded); `mod` declarations are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

type Module = Vec<String>;
/// Who imports whom.
type Edges = BTreeMap<Module, BTreeSet<Module>>;
/// Line count of each file.
type Sizes = Vec<(usize, PathBuf)>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("main") if parts.len() == 1 => return None,
        Some("mod" | "lib") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

/// The code of a file without comments and without its inline `mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The use-tree text starting at `s` (balanced braces).
fn tree_text(s: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return &s[..i],
            '}' => depth -= 1,
            c if depth == 0 && !(is_ident(c) || c == ':') => return &s[..i],
            _ => {}
        }
    }
    s
}

/// Every path a use-tree names (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn expand(tree: &str) -> Vec<Module> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default();
        return vec![
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(str::to_owned)
                .collect(),
        ];
    };
    let prefix: Module = tree[..open]
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .flat_map(expand)
        .map(|p| prefix.iter().cloned().chain(p).collect())
        .collect()
}

fn resolve(modules: &BTreeSet<Module>, mut path: Module) -> Module {
    while !path.is_empty() && !modules.contains(&path) {
        path.pop();
    }
    path
}

fn graph(src: &Path) -> (Edges, Sizes) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut texts = BTreeMap::new();
    let mut sizes = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        sizes.push((text.lines().count(), f.clone()));
        if let Some(m) = module_of(src, f) {
            texts.insert(m, code_of(&text));
        }
    }
    let modules: BTreeSet<Module> = texts.keys().cloned().collect();
    let mut edges = Edges::new();
    for (m, code) in &texts {
        let mut out = BTreeSet::new();
        for head in ["crate::", "super::", "self::"] {
            for (i, _) in code.match_indices(head) {
                if code[..i].chars().next_back().is_some_and(is_ident) {
                    continue;
                }
                let base: Module = match head {
                    "crate::" => Vec::new(),
                    "self::" => m.clone(),
                    _ => m[..m.len().saturating_sub(1)].to_vec(),
                };
                for p in expand(tree_text(&code[i + head.len()..])) {
                    out.insert(resolve(&modules, base.iter().cloned().chain(p).collect()));
                }
            }
        }
        for child in modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
        {
            let name = format!("{}::", child[m.len()]);
            let used = code.match_indices(&name).any(|(i, _)| {
                !code[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| is_ident(c) || c == ':')
            });
            if used {
                out.insert(child.clone());
            }
        }
        out.remove(m);
        edges.insert(m.clone(), out);
    }
    (edges, sizes)
}

fn reaches(edges: &Edges, from: &Module, to: &Module) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.clone()];
    while let Some(m) = stack.pop() {
        if &m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(edges.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (edges, _) = graph(&src);
    assert!(
        edges.len() > 20 && edges.values().map(BTreeSet::len).sum::<usize>() > 40,
        "the walk found the modules and their imports"
    );
    let mut circles = Vec::new();
    for (m, out) in &edges {
        for to in out {
            if reaches(&edges, to, m) {
                circles.push(format!("{} -> {}", m.join("::"), to.join("::")));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn no_file_is_over_700_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (_, sizes) = graph(&src);
    let big: Vec<_> = sizes.iter().filter(|(n, _)| *n > MAX_LINES).collect();
    assert!(big.is_empty(), "files over {MAX_LINES} lines: {big:?}");
}
